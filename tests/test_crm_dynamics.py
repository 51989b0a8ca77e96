"""The Dynamics 365 connector against a recorded Dataverse Web API (httpx.MockTransport):
OData paging with ``@odata.nextLink`` across leads sharing one ``modifiedon``, 429 with
``Retry-After``, a reversal across two pulls, the update-only PATCH, read back, option sets
and bad options."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from leadscoring.config import ConfigError
from leadscoring.crm.connector import Record
from leadscoring.crm.dynamics import Dynamics
from leadscoring.crm.http import JsonClient

from .crm_fakes import fake_client, outcome

BASE = "https://org.crm.dynamics.com"
ROOT = "/api/data/v9.2"


def guid(n: int, tail: int) -> str:
    """A lead id whose text order follows ``n`` and whose SQL Server order follows ``tail``."""
    return f"{n:08x}-0000-0000-0000-{tail:012x}"


def sql_server_order(lead_id: str) -> tuple[str, ...]:
    """SQL Server sorts uniqueidentifier values by their last group first, not as text."""
    h = lead_id.replace("-", "")
    return (h[20:], h[16:20], h[12:16], h[8:12], h[:8])


def lead(lead_id: str, modifiedon: str, statecode: int = 0, statuscode: int = 1, **extra: Any) -> dict[str, Any]:
    return {"leadid": lead_id, "modifiedon": modifiedon, "statecode": statecode, "statuscode": statuscode, **extra}


class FakeDataverse:
    """Answers like the Dataverse Web API: ``$select``/``$filter``/``$orderby`` on ``leads``,
    ``Prefer: odata.maxpagesize`` with a ``@odata.nextLink`` carrying a ``$skiptoken``,
    ``PATCH`` with ``If-Match: *`` (204, or 404 for a missing lead), single-lead reads and
    status metadata. ``throttle`` answers the first n requests with 429 + Retry-After."""

    def __init__(self, leads: list[dict[str, Any]], throttle: int = 0) -> None:
        self.leads = {row["leadid"]: row for row in leads}
        self.throttle = throttle
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.throttle:
            self.throttle -= 1
            message = "Number of requests exceeded the limit of 6000 over time window of 300 seconds."
            return httpx.Response(429, headers={"Retry-After": "3"}, json={"error": {"code": "0x80072322", "message": message}})
        path, params = request.url.path, request.url.params
        if path == f"{ROOT}/leads" and request.method == "GET":
            return self._query(request)
        one = re.fullmatch(rf"{ROOT}/leads\(([^)]*)\)", path)
        if one and request.method == "PATCH":
            assert request.headers["If-Match"] == "*"
            if one.group(1) not in self.leads:
                return httpx.Response(404, json={"error": {"code": "0x80040217", "message": "lead Does Not Exist"}})
            self.leads[one.group(1)].update(httpx.Response(200, content=request.content).json())
            return httpx.Response(204)
        if one and request.method == "GET":
            row = self.leads[one.group(1)]
            return httpx.Response(200, json={"@odata.etag": 'W/"7"', **{k: row.get(k) for k in params["$select"].split(",")}})
        if "StatusAttributeMetadata" in path or "StateAttributeMetadata" in path:
            assert params["$expand"] == "OptionSet($select=Options)"
            values = [1, 2, 3, 4, 5, 6, 7] if "Status" in path else [0, 1, 2]
            options = [{"Value": v, "Label": {"UserLocalizedLabel": {"Label": f"option {v}"}}} for v in values]
            return httpx.Response(200, json={"LogicalName": "x", "OptionSet": {"MetadataId": "m", "Options": options}})
        return httpx.Response(
            404, json={"error": {"code": "0x8006088a", "message": f"Resource not found for the segment '{path}'."}}
        )

    def _query(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        low, high = re.fullmatch(r"modifiedon ge (\S+) and modifiedon lt (\S+)", params["$filter"]).groups()
        assert params["$orderby"] == "modifiedon asc,leadid asc"
        rows = [r for r in self.leads.values() if _time(low) <= _time(r["modifiedon"]) < _time(high)]
        rows.sort(key=lambda r: (_time(r["modifiedon"]), sql_server_order(r["leadid"])))
        size = int(re.fullmatch(r"odata\.maxpagesize=(\d+)", request.headers["Prefer"]).group(1))
        skip = int(params.get("$skiptoken", "0"))
        columns = params["$select"].split(",")
        body: dict[str, Any] = {
            "@odata.context": f"{BASE}{ROOT}/$metadata#leads({params['$select']})",
            "value": [{"@odata.etag": 'W/"1"', **{c: r[c] for c in columns}} for r in rows[skip : skip + size]],
        }
        if skip + size < len(rows):
            query = "&".join(f"{k}={quote(v, safe=',:$')}" for k, v in params.items() if k != "$skiptoken")
            body["@odata.nextLink"] = f"{BASE}{ROOT}/leads?{query}&$skiptoken={skip + size}"
        return httpx.Response(200, json=body, headers={"Preference-Applied": f"odata.maxpagesize={size}"})


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def client_for(fake: FakeDataverse, sleeps: list[float] | None = None) -> JsonClient:
    return fake_client("Dynamics 365", BASE, fake, headers={"Authorization": "Bearer test-token"}, sleeps=sleeps)


SINCE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
UNTIL = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)


def test_pull_pages_through_leads_sharing_one_modifiedon_each_once_in_order() -> None:
    # Three leads share 10:00:00 and the server's GUID order is not their text order; the page
    # size (2) puts a page boundary inside them. One lead sits exactly on `until`.
    a, b, c = guid(1, 0xC), guid(2, 0xA), guid(3, 0xB)
    first, last = guid(4, 1), guid(5, 2)
    leads = [
        lead(guid(6, 3), "2026-03-02T08:59:59Z"),  # before the window
        lead(first, "2026-03-02T09:00:00Z"),
        lead(a, "2026-03-02T10:00:00Z", 1, 3),
        lead(b, "2026-03-02T10:00:00Z", 2, 4),
        lead(c, "2026-03-02T10:00:00Z"),
        lead(last, "2026-03-02T11:00:00Z"),
        lead(guid(7, 4), "2026-03-02T11:00:01Z"),  # after the window
    ]
    fake = FakeDataverse(leads)
    with client_for(fake) as client:
        records = list(Dynamics(BASE, {}, page_size=2).pull(client, SINCE, UNTIL))

    assert [r.lead_id for r in records] == [first, a, b, c, last]
    assert records[1].fields == {"statecode": 1, "statuscode": 3}
    assert records[1].modified_at == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert len(fake.requests) == 3  # pages of 2, 2 and 1
    assert all(r.headers["Prefer"] == "odata.maxpagesize=2" for r in fake.requests)
    assert all(r.headers["OData-Version"] == "4.0" for r in fake.requests)
    params = fake.requests[0].url.params
    assert params["$select"] == "leadid,statecode,statuscode,modifiedon"
    assert params["$filter"] == "modifiedon ge 2026-03-02T09:00:00Z and modifiedon lt 2026-03-02T11:00:01Z"
    assert "%20" in str(fake.requests[0].url) and "$filter=" in str(fake.requests[0].url)


def test_pull_waits_out_a_429_with_retry_after() -> None:
    fake = FakeDataverse([lead(guid(1, 1), "2026-03-02T10:00:00Z")], throttle=1)
    sleeps: list[float] = []
    with client_for(fake, sleeps) as client:
        records = list(Dynamics(BASE, {}, page_size=100).pull(client, SINCE, UNTIL))

    assert [r.lead_id for r in records] == [guid(1, 1)]
    assert sleeps == [3.0]
    assert len(fake.requests) == 2


def test_a_reversal_reads_right_across_two_pulls() -> None:
    lead_id = guid(1, 1)
    fake = FakeDataverse([lead(lead_id, "2026-03-02T10:00:00Z", statecode=1, statuscode=3)])
    dynamics = Dynamics(BASE, {}, page_size=100)
    status_map = dynamics.default_status_map()
    with client_for(fake) as client:
        (qualified,) = dynamics.pull(client, SINCE, UNTIL)
        # The lead is reactivated afterwards: open again, modified later.
        fake.leads[lead_id].update(statecode=0, statuscode=1, modifiedon="2026-03-02T12:30:00Z")
        (reopened,) = dynamics.pull(client, UNTIL, datetime(2026, 3, 2, 13, 0, tzinfo=UTC))

    assert outcome(qualified, status_map) == "converted"
    assert outcome(reopened, status_map) == "open"
    assert reopened.modified_at > qualified.modified_at
    disqualified = Record(lead_id, reopened.modified_at, {"statecode": 2, "statuscode": 4})
    assert outcome(disqualified, status_map) == "lost"


def test_push_is_an_update_only_patch_with_if_match_star() -> None:
    lead_id = guid(1, 1)
    request = Dynamics(BASE, {}, page_size=100).push_request(lead_id, {"new_leadscore": 0.82, "new_grade": "A"})

    assert request.method == "PATCH"
    assert request.path == f"{ROOT}/leads({lead_id})"
    assert request.body == {"new_leadscore": 0.82, "new_grade": "A"}
    assert request.headers["If-Match"] == "*"
    fake = FakeDataverse([lead(lead_id, "2026-03-02T10:00:00Z")])
    with client_for(fake) as client:  # as the push sends it: 204, no content
        assert client.request(request.method, request.path, json_body=request.body, headers=request.headers) is None
    assert fake.leads[lead_id]["new_leadscore"] == 0.82


def test_push_path_follows_the_entity_set_option() -> None:
    request = Dynamics(BASE, {"entity": "opportunity", "entity_set": "opportunities", "api_version": "v9.1"}, 10).push_request(
        "abc", {"x": 1}
    )
    assert request.path == "/api/data/v9.1/opportunities(abc)"


def test_read_back_selects_the_named_columns() -> None:
    lead_id = guid(1, 1)
    fake = FakeDataverse([lead(lead_id, "2026-03-02T10:00:00Z", new_leadscore=0.82, new_grade="A")])
    with client_for(fake) as client:
        values = Dynamics(BASE, {}, page_size=100).read_back(client, lead_id, ["new_leadscore", "new_grade"])

    assert values == {"new_leadscore": 0.82, "new_grade": "A"}
    assert fake.requests[0].url.path == f"{ROOT}/leads({lead_id})"
    assert fake.requests[0].url.params["$select"] == "new_leadscore,new_grade"


def test_status_values_are_the_state_and_status_option_sets() -> None:
    fake = FakeDataverse([])
    with client_for(fake) as client:
        values = Dynamics(BASE, {}, page_size=100).status_values(client)

    assert values == {"statecode": ["0", "1", "2"], "statuscode": ["1", "2", "3", "4", "5", "6", "7"]}
    paths = [r.url.path for r in fake.requests]
    assert paths[1] == (
        f"{ROOT}/EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='statuscode')"
        "/Microsoft.Dynamics.CRM.StatusAttributeMetadata"
    )


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"api_version": "9.2"}, "api_version"),
        ({"entity_set": "leads?$top=1"}, "entity_set"),
        ({"entity": 7}, "entity"),
        ({"entityset": "leads"}, "entityset"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^crm\.options\.{key}: "):
        Dynamics(BASE, options, page_size=100)
