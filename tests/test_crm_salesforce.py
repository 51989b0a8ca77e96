"""The Salesforce connector against a fake org answering like the documented REST API:
``queryAll`` (deleted and merged records included) with ``nextRecordsUrl`` locators that say
``query``, batches of at most ``batchSize`` (sometimes fewer), the sObject read, update and
describe resources, and 403 ``REQUEST_LIMIT_EXCEEDED`` once the daily budget is spent."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from leadscoring.config import ConfigError
from leadscoring.crm.http import CrmError, JsonClient
from leadscoring.crm.salesforce import Salesforce

from .crm_fakes import fake_client

V = "/services/data/v60.0"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SINCE, UNTIL = T0, T0 + timedelta(hours=1)
SOQL = re.compile(
    r"SELECT (?P<fields>.+) FROM Lead WHERE SystemModstamp >= (?P<since>\S+) AND SystemModstamp <= (?P<until>\S+) "
    r"ORDER BY SystemModstamp, Id"
)


def stamp(when: datetime) -> str:
    """Salesforce's datetimes: ``2026-03-02T09:00:00.000+0000``."""
    return f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond // 1000:03d}+0000"


def literal(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


class FakeSalesforce:
    """An in-memory org behind ``httpx.MockTransport``."""

    def __init__(self) -> None:
        self.leads: dict[str, dict[str, Any]] = {}
        self.seen: list[httpx.Request] = []
        self.cursors: dict[str, list[dict[str, Any]]] = {}
        self.limit_exceeded = False
        self.short_batches = False  # answer fewer records than the batch size, as Salesforce may

    def add(self, lead_id: str, modified: datetime, **fields: Any) -> None:
        base = {"Status": "Open - Not Contacted", "IsConverted": False, "ConvertedDate": None, "IsDeleted": False}
        self.leads[lead_id] = {"Id": lead_id, **base, **fields, "SystemModstamp": stamp(modified)}

    def page(self, rows: list[dict[str, Any]], size: int, fields: list[str], total: int) -> httpx.Response:
        take = max(1, size // 3) if self.short_batches else size
        batch, rest = rows[:take], rows[take:]
        records = [
            {"attributes": {"type": "Lead", "url": f"{V}/sobjects/Lead/{r['Id']}"}, **{f: r.get(f) for f in fields}} for r in batch
        ]
        answer: dict[str, Any] = {"totalSize": total, "done": not rest, "records": records}
        if rest:
            locator = f"01gD0000002HU6KIAW-{len(self.cursors) + 1}"
            self.cursors[locator] = rest
            answer["nextRecordsUrl"] = f"{V}/query/{locator}"  # queryAll locators say "query"
        return httpx.Response(200, json=answer)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if self.limit_exceeded:
            return httpx.Response(403, json=[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
        path, method = request.url.path, request.method
        size = int(request.headers.get("Sforce-Query-Options", "batchSize=2000").split("=")[1])
        if method == "GET" and path in (f"{V}/queryAll", f"{V}/query"):
            match = SOQL.fullmatch(request.url.params["q"])
            if not match:
                return httpx.Response(400, json=[{"message": "unexpected query", "errorCode": "MALFORMED_QUERY"}])
            self.fields = [f.strip() for f in match["fields"].split(",")]
            since, until = literal(match["since"]), literal(match["until"])
            rows = [
                r
                for r in self.leads.values()
                if since <= datetime.fromisoformat(r["SystemModstamp"]) <= until
                and (path.endswith("queryAll") or not r["IsDeleted"])
            ]
            rows.sort(key=lambda r: (r["SystemModstamp"], r["Id"]))
            return self.page(rows, size, self.fields, len(rows))
        if method == "GET" and path.startswith(f"{V}/query/"):
            rows = self.cursors.pop(path.rsplit("/", 1)[1])
            return self.page(rows, size, self.fields, len(rows))
        if path == f"{V}/sobjects/Lead/describe":
            fields = [
                {"name": "Id", "type": "id", "picklistValues": []},
                {"name": "IsConverted", "type": "boolean", "picklistValues": []},
                {
                    "name": "Status",
                    "type": "picklist",
                    "picklistValues": [
                        {"active": True, "defaultValue": True, "label": s, "validFor": None, "value": s}
                        for s in ["Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted"]
                    ],
                },
                {"name": "LeadSource", "type": "picklist", "picklistValues": [{"active": False, "value": "Web", "label": "Web"}]},
            ]
            return httpx.Response(200, json={"name": "Lead", "fields": fields})
        if path.startswith(f"{V}/sobjects/Lead/"):
            lead = self.leads.get(path.rsplit("/", 1)[1])
            if lead is None or lead["IsDeleted"]:
                return httpx.Response(404, json=[{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])
            if method == "PATCH":
                lead.update(json.loads(request.content))
                return httpx.Response(204)
            names = request.url.params["fields"].split(",")
            return httpx.Response(
                200, json={"attributes": {"type": "Lead", "url": path}, "Id": lead["Id"], **{n: lead.get(n) for n in names}}
            )
        return httpx.Response(404, json=[{"errorCode": "NOT_FOUND", "message": f"no route {method} {path}"}])


def client_for(server: FakeSalesforce, sleeps: list[float] | None = None) -> JsonClient:
    return fake_client("Salesforce", "https://acme.my.salesforce.com", server, sleeps=sleeps)


def test_identical_timestamps_across_batches_lose_and_repeat_nothing() -> None:
    server = FakeSalesforce()
    same = T0 + timedelta(minutes=10)
    for n in range(2500):  # more than one batch, all modified in the same second
        server.add(f"00Q{n:015d}", same)
    for n in range(30):
        server.add(f"00QB{n:014d}", T0 + timedelta(minutes=n))
    server.short_batches = True
    sf = Salesforce("https://acme.my.salesforce.com", {}, page_size=300)
    records = list(sf.pull(client_for(server), SINCE, UNTIL))
    ids = [r.lead_id for r in records]
    assert len(ids) == 2530 and len(set(ids)) == 2530
    assert [(r.modified_at, r.lead_id) for r in records] == sorted((r.modified_at, r.lead_id) for r in records)
    assert len(server.seen) > 2500 // 300  # followed nextRecordsUrl through every (short) batch
    assert all(r.headers["Sforce-Query-Options"] == "batchSize=300" for r in server.seen)
    assert records[0].fields == {"Status": "Open - Not Contacted", "IsConverted": False}


def test_window_is_exact_though_soql_asks_whole_seconds() -> None:
    server = FakeSalesforce()
    since = T0 + timedelta(milliseconds=500)
    until = UNTIL + timedelta(milliseconds=250)
    server.add("00Qa", T0 + timedelta(milliseconds=499))  # in the second asked, before the window
    server.add("00Qb", T0 + timedelta(milliseconds=500))
    server.add("00Qc", UNTIL + timedelta(milliseconds=250))
    server.add("00Qd", UNTIL + timedelta(milliseconds=251))  # after it
    sf = Salesforce("", {}, page_size=100)
    assert [r.lead_id for r in sf.pull(client_for(server), since, until)] == ["00Qb", "00Qc"]
    assert sf.soql(since, until) == (
        "SELECT Id, Status, IsConverted, ConvertedDate, IsDeleted, SystemModstamp FROM Lead "
        "WHERE SystemModstamp >= 2026-03-02T09:00:00Z AND SystemModstamp <= 2026-03-02T10:00:01Z ORDER BY SystemModstamp, Id"
    )
    assert sf.soql(SINCE, UNTIL).endswith("<= 2026-03-02T10:00:00Z ORDER BY SystemModstamp, Id")


def test_deleted_and_merged_leads_come_from_query_all() -> None:
    server = FakeSalesforce()
    server.add("00Q1", T0 + timedelta(minutes=1))
    server.add("00Q2", T0 + timedelta(minutes=2), IsDeleted=True, Status="Working - Contacted")
    records = list(Salesforce("", {}, page_size=100).pull(client_for(server), SINCE, UNTIL))
    assert [(r.lead_id, r.deleted) for r in records] == [("00Q1", False), ("00Q2", True)]
    assert records[1].fields["Status"] == "Working - Contacted"
    assert server.seen[0].url.path == f"{V}/queryAll"


def test_spent_daily_budget_stops_at_once() -> None:
    server = FakeSalesforce()
    server.limit_exceeded = True
    sleeps: list[float] = []
    client = client_for(server, sleeps)
    with pytest.raises(CrmError) as err:
        list(Salesforce("", {}, page_size=100).pull(client, SINCE, UNTIL))
    message = str(err.value)
    assert "daily API request limit reached (REQUEST_LIMIT_EXCEEDED); not retried" in message
    assert message.startswith("Salesforce: GET /services/data/v60.0/queryAll (Leads modified 2026-03-02T09:00:00+00:00")
    assert "\n" not in message and err.value.status == 403
    assert len(server.seen) == 1 and client.requests == 1 and sleeps == []
    with pytest.raises(CrmError, match="daily API request limit reached"):
        Salesforce("", {}, page_size=100).status_values(client)


def test_a_503_is_retried_after_backoff() -> None:
    server = FakeSalesforce()
    server.add("00Q1", T0 + timedelta(minutes=1))
    flaky = iter([httpx.Response(503, headers={"Retry-After": "2"}, json=[{"errorCode": "SERVER_UNAVAILABLE"}])])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(flaky, None) or server(request)

    sleeps: list[float] = []
    client = JsonClient("Salesforce", "https://acme.my.salesforce.com", transport=httpx.MockTransport(handler), sleep=sleeps.append)
    assert [r.lead_id for r in Salesforce("", {}, page_size=100).pull(client, SINCE, UNTIL)] == ["00Q1"]
    assert sleeps == [2.0]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (["00Q1"], r"Salesforce: .*expected a JSON object, got \['00Q1'\]"),
        ({"done": True, "records": ["00Q1"]}, r"Salesforce: a lead record: expected a JSON object, got '00Q1'"),
    ],
)
def test_an_answer_of_another_shape_is_one_line(answer: Any, expected: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answer)

    client = JsonClient("Salesforce", "https://acme.my.salesforce.com", transport=httpx.MockTransport(handler))
    with pytest.raises(CrmError, match=expected) as err:
        list(Salesforce("", {}, page_size=100).pull(client, SINCE, UNTIL))
    assert "\n" not in str(err.value)


def test_a_reversal_reads_right_in_the_next_pull() -> None:
    server = FakeSalesforce()
    server.add("00Q1", T0 + timedelta(minutes=5), Status="Closed - Converted", IsConverted=True, ConvertedDate="2026-03-02")
    server.add("00Q2", T0 + timedelta(minutes=6), Status="Closed - Not Converted")
    sf = Salesforce("", {}, page_size=100)
    client = client_for(server)
    first = {r.lead_id: r for r in sf.pull(client, SINCE, UNTIL)}
    assert first["00Q1"].fields == {"Status": "Closed - Converted", "IsConverted": True}
    assert first["00Q1"].outcome_at == datetime(2026, 3, 2, tzinfo=UTC)
    assert first["00Q2"].fields["Status"] == "Closed - Not Converted" and first["00Q2"].outcome_at is None
    server.add("00Q1", UNTIL + timedelta(minutes=3), Status="Working - Contacted")  # conversion undone
    second = list(sf.pull(client, UNTIL, UNTIL + timedelta(hours=1)))
    assert [r.lead_id for r in second] == ["00Q1"]
    assert second[0].fields == {"Status": "Working - Contacted", "IsConverted": False} and second[0].outcome_at is None


def test_push_request_read_back_status_values_and_default_map() -> None:
    sf = Salesforce("https://acme.my.salesforce.com", {"api_version": "v61.0", "lost_statuses": ["Dead", "Junk"]}, page_size=100)
    req = sf.push_request("00Q5g00000AbCdE", {"Lead_Score__c": 87, "Lead_Grade__c": "A"})
    assert (req.method, req.path, req.body) == (
        "PATCH",
        "/services/data/v61.0/sobjects/Lead/00Q5g00000AbCdE",
        {"Lead_Score__c": 87, "Lead_Grade__c": "A"},
    )
    assert sf.default_status_map() == {
        "converted": [{"IsConverted": True}],
        "lost": [{"IsConverted": False, "Status": ["Dead", "Junk"]}],
        "open": [{"IsConverted": False}],
    }
    sf = Salesforce("https://acme.my.salesforce.com", {}, page_size=100)
    req = sf.push_request("00Q1", {"Lead_Score__c": 87})
    server = FakeSalesforce()
    server.add("00Q1", T0)
    client = client_for(server)
    assert client.request(req.method, req.path, json_body=req.body) is None  # 204, empty
    assert sf.read_back(client, "00Q1", ["Lead_Score__c", "Status"]) == {"Lead_Score__c": 87, "Status": "Open - Not Contacted"}
    assert server.seen[-1].url.params["fields"] == "Lead_Score__c,Status"
    values = sf.status_values(client)
    assert values == {
        "Status": ["Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted"],
        "LeadSource": ["Web"],
    }
    assert set(sf.default_status_map()["lost"][0]["Status"]) <= set(values["Status"])
    with pytest.raises(CrmError, match=r"Salesforce: GET .*/sobjects/Lead/00Q9 \(lead 00Q9\): HTTP 404"):
        sf.read_back(client, "00Q9", ["Status"])


def test_extra_fields_are_read_for_the_status_map() -> None:
    server = FakeSalesforce()
    server.add("00Q1", T0 + timedelta(minutes=1), Lost_Reason__c="Price")
    sf = Salesforce("", {"fields": ["Lost_Reason__c", "Status"]}, page_size=10)
    assert sf.batch_size == 200  # Salesforce's smallest batch
    (record,) = sf.pull(client_for(server), SINCE, UNTIL)
    assert record.fields == {"Status": "Open - Not Contacted", "IsConverted": False, "Lost_Reason__c": "Price"}
    assert Salesforce("", {}, page_size=10_000).batch_size == 2000


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"api_version": "60"}, "crm.options.api_version"),
        ({"lost_statuses": []}, "crm.options.lost_statuses"),
        ({"lost_statuses": "Dead"}, "crm.options.lost_statuses"),
        ({"fields": ["Name; DELETE"]}, "crm.options.fields"),
        ({"object": "Contact"}, "crm.options.object"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}: ") as err:
        Salesforce("", options, page_size=100)
    assert "\n" not in str(err.value)
