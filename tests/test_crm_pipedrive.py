"""The Pipedrive connector against a recorded API v2 (httpx.MockTransport): cursor paging across
deals sharing one ``update_time``, archived deals from their own list, deleted deals through
``status``, a reversal across two pulls, the PATCH body, read back and bad options."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from leadscoring.config import ConfigError
from leadscoring.crm.connector import Record
from leadscoring.crm.http import JsonClient
from leadscoring.crm.pipedrive import Pipedrive

from .crm_fakes import fake_client, outcome

BASE = "https://acme.pipedrive.com"
SCORE = "d4de1c1518b4531717c676029a45911c340390a6"  # custom field keys are 40-character hashes
GRADE = "0b5e7c4f3a2d1e6f8a9b0c1d2e3f4a5b6c7d8e9f"


def deal(deal_id: int, update_time: str, status: str = "open", **extra: Any) -> dict[str, Any]:
    return {
        "id": deal_id,
        "title": f"Deal {deal_id}",
        "status": status,
        "update_time": update_time,
        "is_deleted": status == "deleted",
        "is_archived": False,
        "won_time": None,
        "lost_time": None,
        "probability": None,
        "custom_fields": {SCORE: None, GRADE: None},
        **extra,
    }


class FakePipedrive:
    """Answers like Pipedrive's API v2: ``GET /api/v2/deals`` (not archived) and
    ``/api/v2/deals/archived`` with ``updated_since`` (>=), ``updated_until`` (<), ``status``
    (comma separated; omitted: every status but deleted), ``sort_by``, ``limit`` and an opaque
    ``cursor``; ``GET``/``PATCH /api/v2/deals/{id}``. Needs the ``x-api-token`` header."""

    def __init__(self, deals: list[dict[str, Any]]) -> None:
        self.deals = {d["id"]: d for d in deals}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("x-api-token") != "test-token":
            return httpx.Response(401, json={"success": False, "error": "unauthorized access", "errorCode": 401})
        path = request.url.path
        if path in ("/api/v2/deals", "/api/v2/deals/archived") and request.method == "GET":
            return self._list(request, archived=path.endswith("archived"))
        one = re.fullmatch(r"/api/v2/deals/(\d+)", path)
        if one and int(one.group(1)) in self.deals:
            found = self.deals[int(one.group(1))]
            if request.method == "PATCH":
                if found["is_archived"]:
                    return httpx.Response(403, json={"success": False, "error": "Archived deals cannot be edited"})
                body = json.loads(request.content)
                found["custom_fields"].update(body.pop("custom_fields", {}))
                found.update(body)
            return httpx.Response(200, json={"success": True, "data": found})
        return httpx.Response(404, json={"success": False, "error": "Deal not found", "errorCode": 404})

    def _list(self, request: httpx.Request, *, archived: bool) -> httpx.Response:
        params = request.url.params
        assert (params["sort_by"], params["sort_direction"]) == ("update_time", "asc")
        statuses = params["status"].split(",") if "status" in params else ["open", "won", "lost"]
        low, high = _time(params["updated_since"]), _time(params["updated_until"])
        rows = [
            d
            for d in self.deals.values()
            if d["is_archived"] == archived and d["status"] in statuses and low <= _time(d["update_time"]) < high
        ]
        rows.sort(key=lambda d: (_time(d["update_time"]), -d["id"]))  # ties: not in id order
        start = int(base64.b64decode(params["cursor"])) if "cursor" in params else 0
        limit = int(params["limit"])
        end = start + limit
        cursor = base64.b64encode(str(end).encode()).decode() if end < len(rows) else None
        return httpx.Response(200, json={"success": True, "data": rows[start:end], "additional_data": {"next_cursor": cursor}})


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def client_for(fake: FakePipedrive) -> JsonClient:
    return fake_client("Pipedrive", BASE, fake, headers={"x-api-token": "test-token"})


SINCE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
UNTIL = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
TIE = "2026-03-02T10:00:00Z"


def test_pull_pages_every_list_once_with_archived_and_deleted_deals_in_order() -> None:
    deals = [
        deal(10, "2026-03-02T08:59:59Z"),  # before the window
        *(deal(n, TIE) for n in (1, 2, 3, 4, 5)),  # five deals share one update_time
        deal(7, TIE, "won", is_archived=True, won_time="2026-03-01T16:00:00Z"),
        deal(6, "2026-03-02T10:15:00Z", "lost", lost_time="2026-03-02T10:15:00Z"),
        deal(8, "2026-03-02T10:30:00Z", "deleted"),
        deal(9, "2026-03-02T11:00:00Z"),  # exactly `until`: in
        deal(11, "2026-03-02T11:00:01Z"),  # after the window
    ]
    fake = FakePipedrive(deals)
    with client_for(fake) as client:
        records = list(Pipedrive(BASE, {}, page_size=2).pull(client, SINCE, UNTIL))

    assert [r.lead_id for r in records] == ["1", "2", "3", "4", "5", "7", "6", "8", "9"]
    by_id = {r.lead_id: r for r in records}
    assert by_id["7"].deleted and by_id["7"].fields == {"status": "won", "is_archived": True, "is_deleted": False}
    assert by_id["7"].outcome_at == datetime(2026, 3, 1, 16, 0, tzinfo=UTC)
    assert by_id["8"].deleted and by_id["8"].fields["status"] == "deleted"
    assert by_id["6"].outcome_at == datetime(2026, 3, 2, 10, 15, tzinfo=UTC) and not by_id["6"].deleted
    assert not by_id["1"].deleted and by_id["1"].outcome_at is None
    first = fake.requests[0].url.params
    assert first["updated_since"] == "2026-03-02T09:00:00Z"
    assert first["updated_until"] == "2026-03-02T11:00:01Z"  # exclusive in Pipedrive
    assert first["status"] == "open,won,lost,deleted"
    assert first["limit"] == "2"
    lists = [r.url.path for r in fake.requests]
    assert lists.count("/api/v2/deals") == 4 and lists.count("/api/v2/deals/archived") == 1
    assert sum("cursor" in r.url.params for r in fake.requests) == 3


def test_default_map_counts_won_lost_deleted_and_open() -> None:
    status_map = Pipedrive(BASE, {}, page_size=10).default_status_map()
    at = datetime(2026, 3, 2, tzinfo=UTC)
    assert [outcome(Record("1", at, {"status": s}), status_map) for s in ("won", "lost", "deleted", "open")] == [
        "converted",
        "lost",
        "lost",
        "open",
    ]


def test_a_reopened_won_deal_reads_right_across_two_pulls() -> None:
    fake = FakePipedrive([deal(42, "2026-03-02T10:00:00Z", "won", won_time="2026-03-02T10:00:00Z")])
    pipedrive = Pipedrive(BASE, {}, page_size=100)
    status_map = pipedrive.default_status_map()
    with client_for(fake) as client:
        (won,) = pipedrive.pull(client, SINCE, UNTIL)
        fake.deals[42].update(status="open", won_time=None, update_time="2026-03-02T12:30:00Z")
        (reopened,) = pipedrive.pull(client, UNTIL, datetime(2026, 3, 2, 13, 0, tzinfo=UTC))

    assert outcome(won, status_map) == "converted" and won.outcome_at == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert outcome(reopened, status_map) == "open" and reopened.outcome_at is None


def test_push_patches_custom_fields_in_their_v2_object() -> None:
    request = Pipedrive(BASE, {}, page_size=100).push_request("42", {SCORE: 0.82, GRADE: "A", "probability": 82})

    assert (request.method, request.path) == ("PATCH", "/api/v2/deals/42")
    assert request.body == {"custom_fields": {SCORE: 0.82, GRADE: "A"}, "probability": 82}
    fake = FakePipedrive([deal(42, TIE)])
    with client_for(fake) as client:
        client.request(request.method, request.path, json_body=request.body, headers=request.headers)
    assert fake.deals[42]["custom_fields"][SCORE] == 0.82 and fake.deals[42]["probability"] == 82


def test_read_back_reads_custom_and_standard_fields() -> None:
    fake = FakePipedrive([deal(42, TIE, probability=82, custom_fields={SCORE: 0.82, GRADE: "A"})])
    with client_for(fake) as client:
        values = Pipedrive(BASE, {}, page_size=100).read_back(client, "42", [SCORE, "probability"])

    assert values == {SCORE: 0.82, "probability": 82}
    assert fake.requests[0].url.path == "/api/v2/deals/42"


def test_status_values_are_the_fixed_statuses_without_a_request() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    with JsonClient("Pipedrive", BASE, transport=httpx.MockTransport(refuse)) as client:
        assert Pipedrive(BASE, {}, page_size=100).status_values(client) == {"status": ["open", "won", "lost", "deleted"]}


def test_page_size_is_capped_at_the_api_limit() -> None:
    assert Pipedrive(BASE, {}, page_size=5000).page_size == 500


def test_options_are_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^crm\.options\.entity: "):
        Pipedrive(BASE, {"entity": "deals"}, page_size=100)
