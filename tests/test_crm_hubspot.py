"""The HubSpot connector against a fake HubSpot answering like the documented CRM v3 API:
search (filters, one sort rule, ``after`` offsets, 200 a page, HTTP 400 past 10,000 results of
one query, no archived records), the archived list, read, update, properties and pipelines."""

from __future__ import annotations

import bisect
import json
import operator
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import httpx
import pytest

from leadscoring.config import ConfigError
from leadscoring.crm.http import CrmError, JsonClient
from leadscoring.crm.hubspot import SEARCH_CAP, HubSpot, daily_limit

from .crm_fakes import fake_client, outcome

OPERATORS = {"GTE": operator.ge, "LTE": operator.le, "GT": operator.gt, "LT": operator.lt, "EQ": operator.eq}
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SINCE, UNTIL = T0, T0 + timedelta(hours=1)
MOD = "lastmodifieddate"


def iso(when: datetime) -> str:
    """HubSpot's timestamps: ISO 8601 with milliseconds and Z."""
    return f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond // 1000:03d}Z"


@cache
def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


class FakeHubSpot:
    """An in-memory HubSpot portal behind ``httpx.MockTransport``."""

    def __init__(self, obj: str = "contacts", cap: int = SEARCH_CAP) -> None:
        self.obj, self.cap = obj, cap
        self.records: dict[int, dict[str, Any]] = {}
        self.searches: list[dict[str, Any]] = []
        self.seen: list[httpx.Request] = []
        self.throttle: list[httpx.Response] = []  # answered first, one per request
        self.after_search: Callable[[FakeHubSpot], None] | None = None

    def add(self, oid: int, modified: datetime, archived_at: datetime | None = None, **props: Any) -> None:
        props = {"lifecyclestage": "lead", "hs_lead_status": "OPEN", **props}
        self.records[oid] = {
            "properties": {**props, MOD: iso(modified), "hs_object_id": str(oid), "createdate": iso(T0 - timedelta(days=30))},
            "archivedAt": iso(archived_at) if archived_at else None,
        }

    def view(self, oid: int, names: list[str]) -> dict[str, Any]:
        rec = self.records[oid]
        props = rec["properties"]
        shown = {n: props.get(n) for n in names} | {k: props[k] for k in ("hs_object_id", "createdate", MOD)}
        out = {"id": str(oid), "properties": shown, "createdAt": props["createdate"], "updatedAt": props[MOD]}
        out["archived"] = rec["archivedAt"] is not None
        if rec["archivedAt"]:
            out["archivedAt"] = rec["archivedAt"]
        return out

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if self.throttle:
            return self.throttle.pop(0)
        path, method = request.url.path, request.method
        base = f"/crm/v3/objects/{self.obj}"
        if method == "POST" and path == f"{base}/search":
            answer = self.search(json.loads(request.content))
            if self.after_search:
                self.after_search(self)
            return answer
        if method == "GET" and path == base:
            return self.list_archived(request.url.params)
        if path.startswith(f"{base}/"):
            oid = int(path.rsplit("/", 1)[1])
            if oid not in self.records or self.records[oid]["archivedAt"]:
                return httpx.Response(404, json={"status": "error", "message": "Object not found.", "category": "OBJECT_NOT_FOUND"})
            if method == "PATCH":
                self.records[oid]["properties"].update(json.loads(request.content)["properties"])
                return httpx.Response(200, json=self.view(oid, []))
            names = request.url.params.get("properties", "").split(",")
            return httpx.Response(200, json=self.view(oid, names))
        if path == f"/crm/v3/properties/{self.obj}/lifecyclestage":
            stages = [
                "subscriber",
                "lead",
                "marketingqualifiedlead",
                "salesqualifiedlead",
                "opportunity",
                "customer",
                "evangelist",
                "other",
            ]
            return httpx.Response(
                200,
                json={
                    "name": "lifecyclestage",
                    "type": "enumeration",
                    "options": [{"label": s.title(), "value": s, "hidden": False} for s in stages],
                },
            )
        if path == f"/crm/v3/properties/{self.obj}/hs_lead_status":
            statuses = ["NEW", "OPEN", "IN_PROGRESS", "OPEN_DEAL", "UNQUALIFIED", "ATTEMPTED_TO_CONTACT", "CONNECTED", "BAD_TIMING"]
            return httpx.Response(
                200, json={"name": "hs_lead_status", "type": "enumeration", "options": [{"label": s, "value": s} for s in statuses]}
            )
        if path == f"/crm/v3/pipelines/{self.obj}":
            pipelines = [
                {
                    "id": "default",
                    "label": "Sales Pipeline",
                    "stages": [{"id": "appointmentscheduled"}, {"id": "closedwon"}, {"id": "closedlost"}],
                },
                {"id": "renewals", "label": "Renewals", "stages": [{"id": "1234567"}]},
            ]
            return httpx.Response(200, json={"results": pipelines})
        return httpx.Response(404, json={"status": "error", "message": f"no route {method} {path}"})

    def search(self, body: dict[str, Any]) -> httpx.Response:
        self.searches.append(body)
        limit, after = int(body.get("limit", 10)), int(body.get("after", 0))
        if limit > 200 or len(body.get("sorts", [])) > 1:
            return httpx.Response(
                400, json={"status": "error", "category": "VALIDATION_ERROR", "message": "invalid limit or sorts"}
            )
        if after + limit > self.cap:
            return httpx.Response(
                400, json={"status": "error", "category": "VALIDATION_ERROR", "message": "Cannot page beyond 10000 results"}
            )

        def value(oid: int, prop: str) -> int:
            raw = self.records[oid]["properties"].get(prop)
            return ms(raw) if prop == MOD else int(raw)

        live = sorted(oid for oid, rec in self.records.items() if not rec["archivedAt"])
        found: set[int] = set()
        for group in body.get("filterGroups") or [{"filters": []}]:
            start, rest = 0, []
            for f in group["filters"]:  # like an index, hs_object_id > N skips the ids up to N
                if f["propertyName"] == "hs_object_id" and f["operator"] == "GT":
                    start = max(start, bisect.bisect_right(live, int(f["value"])))
                else:
                    rest.append((f["propertyName"], OPERATORS[f["operator"]], int(f["value"])))
            found.update(oid for oid in live[start:] if all(op(value(oid, prop), want) for prop, op, want in rest))
        sort = (body.get("sorts") or [{"propertyName": "hs_object_id", "direction": "ASCENDING"}])[0]
        hits = sorted(found, key=lambda oid: value(oid, sort["propertyName"]), reverse=sort["direction"] == "DESCENDING")
        page = [self.view(oid, body.get("properties", [])) for oid in hits[after : after + limit]]
        answer: dict[str, Any] = {"total": len(hits), "results": page}
        if after + limit < len(hits):
            answer["paging"] = {"next": {"after": str(after + limit)}}
        return httpx.Response(200, json=answer)

    def list_archived(self, params: httpx.QueryParams) -> httpx.Response:
        assert params.get("archived") == "true"
        limit = int(params.get("limit", 10))
        if limit > 100:
            return httpx.Response(400, json={"status": "error", "message": "limit above 100"})
        archived = sorted(oid for oid, rec in self.records.items() if rec["archivedAt"])
        start = int(params.get("after", 0))
        chunk = [oid for oid in archived if oid >= start][:limit]
        names = params.get("properties", "").split(",")
        answer: dict[str, Any] = {"results": [self.view(oid, names) for oid in chunk]}
        rest = [oid for oid in archived if chunk and oid > chunk[-1]]
        if rest:
            answer["paging"] = {
                "next": {"after": str(rest[0]), "link": f"https://api.hubapi.com/crm/v3/objects/{self.obj}?after={rest[0]}"}
            }
        return httpx.Response(200, json=answer)


def client_for(server: FakeHubSpot, sleeps: list[float] | None = None) -> JsonClient:
    return fake_client("HubSpot", "https://api.hubapi.com", server, sleeps=sleeps)


def test_identical_timestamps_across_pages_lose_and_repeat_nothing() -> None:
    server = FakeHubSpot()
    same = T0 + timedelta(minutes=10)
    for oid in range(1000, 1450):  # 450 contacts modified in the same millisecond
        server.add(oid, same)
    for oid in range(2000, 2050):
        server.add(oid, T0 + timedelta(minutes=oid - 2000))
    server.add(5, T0 - timedelta(milliseconds=1))  # just before the window
    server.add(6, UNTIL + timedelta(milliseconds=1))  # just after
    server.add(7, T0)  # exactly at since
    server.add(8, UNTIL)  # exactly at until
    records = list(HubSpot("", {}, page_size=100).pull(client_for(server), SINCE, UNTIL))
    ids = [r.lead_id for r in records]
    assert sorted(ids) == sorted(str(i) for i in [*range(1000, 1450), *range(2000, 2050), 7, 8])
    assert len(ids) == len(set(ids))
    assert [(r.modified_at, r.lead_id) for r in records] == sorted((r.modified_at, r.lead_id) for r in records)
    assert all(len(body["sorts"]) == 1 and "after" not in body and body["limit"] == 100 for body in server.searches)
    assert records[0].fields == {"lifecyclestage": "lead", "hs_lead_status": "OPEN"} and not records[0].deleted


def test_window_filters_are_inclusive_epoch_milliseconds() -> None:
    server = FakeHubSpot()
    since = T0 + timedelta(microseconds=1500)  # between two milliseconds: the first whole one after
    list(HubSpot("", {}, page_size=10).pull(client_for(server), since, UNTIL))
    filters = server.searches[0]["filterGroups"][0]["filters"]
    assert filters == [
        {"propertyName": MOD, "operator": "GTE", "value": str(int(T0.timestamp() * 1000) + 2)},
        {"propertyName": MOD, "operator": "LTE", "value": str(int(UNTIL.timestamp() * 1000))},
    ]


def test_more_than_10000_records_in_one_window() -> None:
    server = FakeHubSpot()
    assert server.search({"limit": 200, "after": "9900"}).status_code == 400  # the fake enforces the cap
    server.searches.clear()
    for oid in range(1, 10_501):  # many share a timestamp: 105 distinct times
        server.add(oid * 3, T0 + timedelta(seconds=oid % 105))
    started = time.perf_counter()
    records = list(HubSpot("", {}, page_size=500).pull(client_for(server), SINCE, UNTIL))
    elapsed = time.perf_counter() - started
    assert len(records) == 10_500 and len({r.lead_id for r in records}) == 10_500
    assert [(r.modified_at, r.lead_id) for r in records] == sorted((r.modified_at, r.lead_id) for r in records)
    assert all(body["limit"] == 200 for body in server.searches)  # page_size capped at HubSpot's 200
    assert len(server.searches) == 53
    assert elapsed < 10, f"the 10,500-record pull took {elapsed:.1f} s"


def test_a_record_modified_again_mid_pull_shifts_no_page() -> None:
    server = FakeHubSpot()
    for oid in range(1, 301):
        server.add(oid, T0 + timedelta(minutes=5))

    def touch_first_page(fake: FakeHubSpot) -> None:  # contact 10 (already read) modified after the window
        if len(fake.searches) == 1:
            fake.records[10]["properties"][MOD] = iso(UNTIL + timedelta(minutes=1))

    server.after_search = touch_first_page
    records = list(HubSpot("", {}, page_size=100).pull(client_for(server), SINCE, UNTIL))
    assert sorted(int(r.lead_id) for r in records) == list(range(1, 301))


def test_archived_contacts_come_as_deleted_records() -> None:
    server = FakeHubSpot()
    server.add(1, T0 + timedelta(minutes=1))
    server.add(2, T0 - timedelta(days=3), archived_at=T0 + timedelta(minutes=20), lifecyclestage="opportunity")
    server.add(3, T0 - timedelta(days=3), archived_at=T0 - timedelta(days=1))  # archived before the window
    server.add(4, T0 - timedelta(days=2), archived_at=T0 + timedelta(minutes=30))
    server.add(5, T0 - timedelta(days=2), archived_at=UNTIL + timedelta(seconds=1))  # after it
    records = list(HubSpot("", {}, page_size=2).pull(client_for(server), SINCE, UNTIL))
    assert [(r.lead_id, r.deleted) for r in records] == [("1", False), ("2", True), ("4", True)]
    assert records[1].modified_at == T0 + timedelta(minutes=20)
    assert records[1].fields["lifecyclestage"] == "opportunity"
    lists = [r for r in server.seen if r.method == "GET"]
    assert len(lists) == 2 and lists[1].url.params["after"] == "4"  # the archived list is paged


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ([{"id": "5"}], r"search for contacts modified .*: expected a JSON object, got \[\{'id': '5'\}\]"),
        ({"results": ["5"]}, r"HubSpot: a search result without a numeric id: 5"),
        ({"results": [{"id": "5", "properties": ["lifecyclestage"]}]}, r"HubSpot: contacts 5's properties: expected a JSON object"),
    ],
)
def test_an_answer_of_another_shape_is_one_line(answer: Any, expected: str) -> None:
    server = FakeHubSpot()
    server.throttle.append(httpx.Response(200, json=answer))  # the first answer, whatever is asked
    with pytest.raises(CrmError, match=expected) as err:
        list(HubSpot("", {}, page_size=100).pull(client_for(server), SINCE, UNTIL))
    assert "\n" not in str(err.value)


def test_429_waits_as_long_as_retry_after_asks() -> None:
    server = FakeHubSpot()
    server.add(1, T0 + timedelta(minutes=1))
    limited = {"Retry-After": "3", "X-HubSpot-RateLimit-Interval-Milliseconds": "10000", "X-HubSpot-RateLimit-Remaining": "0"}
    server.throttle.append(
        httpx.Response(
            429,
            headers=limited,
            json={
                "status": "error",
                "message": "You have reached your secondly limit.",
                "errorType": "RATE_LIMIT",
                "policyName": "SECONDLY",
            },
        )
    )
    sleeps: list[float] = []
    records = list(HubSpot("", {}, page_size=10).pull(client_for(server, sleeps), SINCE, UNTIL))
    assert sleeps == [3.0]
    assert [r.lead_id for r in records] == ["1"]


def daily_limit_answer() -> httpx.Response:
    """HubSpot's answer once the account's daily limit is spent (its API usage guidelines)."""
    body = {
        "status": "error",
        "message": "You have reached your daily limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": "c033cdaa-2c40-4a64-ae48-b4cec88dad24",
        "policyName": "DAILY",
        "requestId": "3d3e35b7-0dae-4b9f-a6e3-9c230cbcf8dd",
    }
    return httpx.Response(429, headers={"X-HubSpot-RateLimit-Daily-Remaining": "0"}, json=body)


def test_a_spent_daily_limit_stops_at_once_without_retrying() -> None:
    server = FakeHubSpot()
    server.add(1, T0 + timedelta(minutes=1))
    server.throttle.append(daily_limit_answer())
    sleeps: list[float] = []
    client = client_for(server, sleeps)
    with pytest.raises(CrmError) as err:
        list(HubSpot("", {}, page_size=10).pull(client, SINCE, UNTIL))
    message = str(err.value)
    assert message.startswith("HubSpot: POST /crm/v3/objects/contacts/search (contacts modified 2026-03-02T09:00:00+00:00")
    assert message.endswith("daily API request limit reached (DAILY); not retried") and "\n" not in message
    assert err.value.status == 429 and len(server.seen) == 1 and client.requests == 1 and sleeps == []
    server.throttle.append(daily_limit_answer())
    with pytest.raises(CrmError, match=r"HubSpot: GET .*\(property lifecyclestage\): daily API request limit reached"):
        HubSpot("", {}, page_size=10).status_values(client)  # every request of the connector: the check too
    assert client.requests == 2


def test_only_the_daily_policy_is_final() -> None:
    assert daily_limit(daily_limit_answer()) is not None
    worded = httpx.Response(
        429, json={"status": "error", "message": "You have reached your daily limit.", "errorType": "RATE_LIMIT"}
    )
    assert daily_limit(worded) is not None  # no policyName: the message says daily
    for other in (
        httpx.Response(429, json={"errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING", "message": "secondly"}),
        httpx.Response(429, text="Too Many Requests"),
        httpx.Response(403, json={"policyName": "DAILY"}),  # not a 429: HubSpot's usual 4xx handling
    ):
        assert daily_limit(other) is None


def test_a_reversal_reads_right_in_the_next_pull() -> None:
    server = FakeHubSpot()
    won = T0 + timedelta(minutes=5)
    server.add(1, won, lifecyclestage="customer", hs_lifecyclestage_customer_date=iso(won))
    server.add(2, won, hs_lead_status="UNQUALIFIED")
    hub = HubSpot("", {}, page_size=10)
    client = client_for(server)
    status_map = hub.default_status_map()
    first = {r.lead_id: r for r in hub.pull(client, SINCE, UNTIL)}
    assert outcome(first["1"], status_map) == "converted" and first["1"].outcome_at == won
    assert outcome(first["2"], status_map) == "lost"
    later = UNTIL + timedelta(minutes=10)  # the deal fell through: back to lead
    server.records[1]["properties"].update({"lifecyclestage": "lead", MOD: iso(later)})
    second = list(hub.pull(client, UNTIL, UNTIL + timedelta(hours=1)))
    assert [r.lead_id for r in second] == ["1"]
    assert outcome(second[0], status_map) == "open" and second[0].outcome_at is None


def test_push_request_read_back_and_status_values() -> None:
    hub = HubSpot("", {}, page_size=100)
    req = hub.push_request("1001", {"lead_score": 87, "lead_grade": "A"})
    assert (req.method, req.path, req.body) == (
        "PATCH",
        "/crm/v3/objects/contacts/1001",
        {"properties": {"lead_score": 87, "lead_grade": "A"}},
    )
    assert hub.push_request("a/b", {}).path == "/crm/v3/objects/contacts/a%2Fb"
    server = FakeHubSpot()
    server.add(1001, T0)
    client = client_for(server)
    with client:
        answer = client.request(req.method, req.path, json_body=req.body)  # the fake accepts the shape
        assert answer["id"] == "1001"
        assert hub.read_back(client, "1001", ["lead_score", "lead_grade"]) == {"lead_score": 87, "lead_grade": "A"}
        assert server.seen[-1].url.params["properties"] == "lead_score,lead_grade"
        values = hub.status_values(client)
    assert values["lifecyclestage"][-3:] == ["customer", "evangelist", "other"] and "UNQUALIFIED" in values["hs_lead_status"]
    for kind, rules in hub.default_status_map().items():  # the default map names values HubSpot allows
        for rule in rules:
            for name, allowed in rule.items():
                assert set(allowed if isinstance(allowed, list) else [allowed]) <= set(values[name]), (kind, name)
    with pytest.raises(CrmError, match=r"HubSpot: GET /crm/v3/objects/contacts/999 \(contacts 999\): HTTP 404"):
        hub.read_back(client_for(server), "999", ["lead_score"])


def test_deals_read_dealstage_and_pipeline_stages() -> None:
    deals = HubSpot("https://api.hubapi.com", {"object": "deals"}, page_size=50)
    assert deals.properties == ["dealstage"] and deals.modified_property == "hs_lastmodifieddate"
    server = FakeHubSpot(obj="deals")
    assert deals.status_values(client_for(server)) == {"dealstage": ["appointmentscheduled", "closedwon", "closedlost", "1234567"]}
    assert deals.default_status_map()["converted"] == [{"dealstage": "closedwon"}]
    only_stage = HubSpot("", {"properties": ["lifecyclestage"]}, page_size=10).default_status_map()
    assert "lost" not in only_stage and only_stage["converted"] == [{"lifecyclestage": ["customer", "evangelist"]}]


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"object": "tickets"}, "crm.options.object"),
        ({"properties": []}, "crm.options.properties"),
        ({"properties": "lifecyclestage"}, "crm.options.properties"),
        ({"properties": ["a", "a"]}, "crm.options.properties"),
        ({"objet": "contacts"}, "crm.options.objet"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}: ") as err:
        HubSpot("", options, page_size=100)
    assert "\n" not in str(err.value)
