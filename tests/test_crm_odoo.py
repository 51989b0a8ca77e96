"""The Odoo connector against a recorded JSON-2 API (httpx.MockTransport): a keyset through
leads written within one second (Odoo keeps ``write_date`` to the microsecond and shows it to the
second), archived lost leads, won stages, a reversal across two pulls, write/read shapes, the
database header, stage names and bad options."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from leadscoring.config import ConfigError
from leadscoring.crm.http import CrmError, JsonClient
from leadscoring.crm.odoo import Odoo

from .crm_fakes import fake_client, outcome

BASE = "https://acme.odoo.com"
SHOWN = "%Y-%m-%d %H:%M:%S"
STAGES = [  # id, name, sequence, is_won
    (1, "New", 1, False),
    (2, "Qualified", 2, False),
    (3, "Won", 70, True),
    (4, "Proposition", 3, False),
]
OPS = {
    "=": lambda a, b: a == b,
    ">": lambda a, b: a is not None and a > b,
    ">=": lambda a, b: a is not None and a >= b,
    "<": lambda a, b: a is not None and a < b,
    "<=": lambda a, b: a is not None and a <= b,
}


def at(text: str) -> datetime:
    """A stored time, microseconds included, as Odoo keeps ``write_date`` (naive UTC)."""
    return datetime.fromisoformat(text)


def lead(lead_id: int, write_date: str, stage: int = 1, active: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "id": lead_id,
        "write_date": at(write_date),
        "stage_id": stage,
        "active": active,
        "probability": 10.0,
        "date_closed": None,
        **extra,
    }


class FakeOdoo:
    """Answers like Odoo 19's ``POST /json/2/<model>/<method>``: ``search_read`` (AND domains,
    ``order``, ``limit``, ``context.active_test``), ``read`` and ``write`` on ``crm.lead`` and
    ``search_read`` on ``crm.stage``. Stored datetimes keep microseconds and compare as such;
    answers show them to the second, many2one fields as ``[id, name]`` and empty ones as false."""

    def __init__(self, leads: list[dict[str, Any]], database: str | None = None) -> None:
        self.leads = {row["id"]: row for row in leads}
        self.stages = {sid: {"id": sid, "name": name, "sequence": seq, "is_won": won} for sid, name, seq, won in STAGES}
        self.database = database
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("Authorization", "").lower() != "bearer test-key":
            return httpx.Response(401, json={"name": "werkzeug.exceptions.Unauthorized", "message": "Invalid apikey"})
        if self.database and request.headers.get("X-Odoo-Database") != self.database:
            return httpx.Response(404, json={"name": "werkzeug.exceptions.NotFound", "message": "database not found"})
        model, method = re.fullmatch(r"/json/2/([^/]+)/([^/]+)", request.url.path).groups()
        body = json.loads(request.content)
        self.calls.append((model, method, body))
        table = {"crm.lead": self.leads, "crm.stage": self.stages}[model]
        if method == "search_read":
            rows = self._search(table, model, body)
            return httpx.Response(200, json=[self._shown(row, body.get("fields")) for row in rows])
        if method == "read":
            return httpx.Response(200, json=[self._shown(table[i], body["fields"]) for i in body["ids"] if i in table])
        if method == "write":
            for i in body["ids"]:
                table[i].update(body["vals"], write_date=at("2026-03-02T14:00:00.250000"))
            return httpx.Response(200, json=True)
        return httpx.Response(404, json={"name": "werkzeug.exceptions.NotFound", "message": f"no method {method}"})

    def _search(self, table: dict[int, dict[str, Any]], model: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        rows = list(table.values())
        if model == "crm.lead" and body.get("context", {}).get("active_test", True):
            rows = [r for r in rows if r["active"]]
        for name, op, value in body.get("domain", []):
            if name in ("write_date", "date_closed"):
                value = datetime.strptime(value, SHOWN)
            rows = [r for r in rows if OPS[op](r.get(name), value)]
        for part in reversed([p.split() for p in body.get("order", "id asc").split(",")]):
            rows.sort(key=lambda r, name=part[0]: r[name], reverse=part[1:] == ["desc"])
        return rows[body.get("offset", 0) :][: body.get("limit") or None]

    def _shown(self, row: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in fields or list(row):
            value = row.get(name)
            if isinstance(value, datetime):
                value = value.strftime(SHOWN)
            elif name == "stage_id":
                value = [value, self.stages[value]["name"]] if value else False
            out[name] = False if value is None else value
        out["id"] = row["id"]
        return out


def client_for(fake: FakeOdoo) -> JsonClient:
    return fake_client("Odoo", BASE, fake, headers={"Authorization": "bearer test-key"})


SINCE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
UNTIL = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)


def test_pull_keyset_sees_each_lead_written_within_one_second_once() -> None:
    # Five leads written within 10:00:00 (stored to the microsecond, shown to the second), in an
    # order unrelated to their ids; pages of 2 cut through them. A lead stored at 11:00:00.7 is
    # shown at 11:00:00, which is `until`: in.
    leads = [
        lead(9, "2026-03-02T08:59:59.900000"),  # before the window
        lead(5, "2026-03-02T10:00:00.100000"),
        lead(2, "2026-03-02T10:00:00.200000"),
        lead(4, "2026-03-02T10:00:00.300000"),
        lead(1, "2026-03-02T10:00:00.400000"),
        lead(3, "2026-03-02T10:00:00.500000"),
        lead(6, "2026-03-02T09:00:00.000000"),
        lead(7, "2026-03-02T11:00:00.700000"),
        lead(8, "2026-03-02T11:00:01.000000"),  # after the window
    ]
    fake = FakeOdoo(leads)
    with client_for(fake) as client:
        records = list(Odoo(BASE, {}, page_size=2).pull(client, SINCE, UNTIL))

    assert [r.lead_id for r in records] == ["6", "1", "2", "3", "4", "5", "7"]
    assert records[1].modified_at == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    searches = [body for model, method, body in fake.calls if (model, method) == ("crm.lead", "search_read")]
    assert [body["domain"][2] for body in searches] == [["id", ">", 0], ["id", ">", 2], ["id", ">", 4], ["id", ">", 6]]
    first = searches[0]
    assert first["domain"][:2] == [["write_date", ">=", "2026-03-02 09:00:00"], ["write_date", "<", "2026-03-02 11:00:01"]]
    assert (first["order"], first["limit"], first["context"]) == ("id asc", 2, {"active_test": False})
    assert set(first["fields"]) >= {"write_date", "active", "stage_id", "probability", "date_closed"}


def test_archived_lost_and_won_leads_are_read_with_their_outcome() -> None:
    leads = [
        lead(1, "2026-03-02T10:00:00.5", stage=2, active=False, probability=0.0),  # lost: archived
        lead(2, "2026-03-02T10:05:00", stage=3, probability=100.0, date_closed=at("2026-03-02T10:05:00")),
        lead(3, "2026-03-02T10:10:00", stage=4),
    ]
    odoo = Odoo(BASE, {}, page_size=100)
    with client_for(FakeOdoo(leads)) as client:
        lost, won, still_open = odoo.pull(client, SINCE, UNTIL)

    status_map = odoo.default_status_map()
    assert lost.deleted and lost.fields == {"won": False, "active": False, "stage": "Qualified", "probability": 0.0}
    assert outcome(lost, status_map) == "lost"
    assert not won.deleted and won.fields["won"] is True and won.fields["stage"] == "Won"
    assert outcome(won, status_map) == "converted" and won.outcome_at == datetime(2026, 3, 2, 10, 5, tzinfo=UTC)
    assert outcome(still_open, status_map) == "open" and still_open.outcome_at is None


def test_a_won_lead_moved_back_reads_right_across_two_pulls() -> None:
    fake = FakeOdoo([lead(7, "2026-03-02T10:00:00", stage=3, date_closed=at("2026-03-02T10:00:00"))])
    odoo = Odoo(BASE, {}, page_size=100)
    status_map = odoo.default_status_map()
    with client_for(fake) as client:
        (won,) = odoo.pull(client, SINCE, UNTIL)
        fake.leads[7].update(stage_id=2, date_closed=None, write_date=at("2026-03-02T12:30:00.4"))
        (reopened,) = odoo.pull(client, UNTIL, datetime(2026, 3, 2, 13, 0, tzinfo=UTC))

    assert outcome(won, status_map) == "converted"
    assert outcome(reopened, status_map) == "open" and reopened.outcome_at is None
    assert reopened.modified_at == datetime(2026, 3, 2, 12, 30, tzinfo=UTC)


def test_push_writes_the_lead_with_the_database_header() -> None:
    odoo = Odoo(BASE, {"database": "acme-prod"}, page_size=100)
    request = odoo.push_request("7", {"x_lead_score": 0.82, "x_grade": "A"})

    assert (request.method, request.path) == ("POST", "/json/2/crm.lead/write")
    assert request.body == {"ids": [7], "vals": {"x_lead_score": 0.82, "x_grade": "A"}}
    assert request.headers == {"X-Odoo-Database": "acme-prod"}
    fake = FakeOdoo([lead(7, "2026-03-02T10:00:00")], database="acme-prod")
    with client_for(fake) as client:
        assert client.request(request.method, request.path, json_body=request.body, headers=request.headers) is True
        assert odoo.read_back(client, "7", ["x_lead_score", "x_grade"]) == {"x_lead_score": 0.82, "x_grade": "A"}
    assert fake.calls[-1][:2] == ("crm.lead", "read")
    assert fake.calls[-1][2]["ids"] == [7]


def test_push_refuses_an_id_that_is_not_an_odoo_record_id() -> None:
    with pytest.raises(CrmError, match=r"^Odoo: lead 'L-7': not an Odoo record id"):
        Odoo(BASE, {}, page_size=100).push_request("L-7", {"x_lead_score": 0.5})


def test_status_values_are_the_stage_names_in_pipeline_order() -> None:
    fake = FakeOdoo([])
    with client_for(fake) as client:
        assert Odoo(BASE, {}, page_size=100).status_values(client) == {"stage": ["New", "Qualified", "Proposition", "Won"]}
    assert fake.calls[0][:2] == ("crm.stage", "search_read")


@pytest.mark.parametrize(
    ("options", "key"),
    [({"model": "CRM Lead"}, "model"), ({"database": ""}, "database"), ({"database": "a\nb"}, "database"), ({"db": "x"}, "db")],
)
def test_bad_options_name_the_key(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^crm\.options\.{key}: "):
        Odoo(BASE, options, page_size=100)
