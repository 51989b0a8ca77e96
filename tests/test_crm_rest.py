"""The configured ``rest`` CRM and the push through a ``crm:`` section: push URL and body
templates, every paging style against recorded answers (a page boundary inside a group of
leads sharing one modification time), the window, polling known leads, one-line errors
(missing JSON path, 401, an answer that is not JSON), credentials kept out of logs and
errors, ``crm check`` (a field the CRM drops in silence, a status value the map misses) and
``push`` with ``auth: header``."""

from __future__ import annotations

import base64
import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pandas as pd
import pytest

from leadscoring.cli import main
from leadscoring.config import ConfigError, load_config
from leadscoring.config.sections import CrmConfig
from leadscoring.crm import auth_headers, connector_for, json_client
from leadscoring.crm.check import check_status_values
from leadscoring.crm.connector import PushRequest
from leadscoring.crm.http import CrmError
from leadscoring.crm.push import push_scores
from leadscoring.crm.rest import Rest
from leadscoring.serving.payloads import crm_payloads

from .conftest import write_project

URL = "https://crm.test/api"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SINCE, UNTIL = T0, T0 + timedelta(hours=1)
TOKEN = "tok-S3CRET-value-42"

#: The fake CRM's leads: (id, modified); L03..L06 share one time, L00 and L99 are outside the window.
LEADS = [
    ("L00", T0 - timedelta(minutes=1)),
    ("L01", T0 + timedelta(seconds=1)),
    ("L02", T0 + timedelta(seconds=2)),
    ("L06", T0 + timedelta(seconds=5)),
    ("L04", T0 + timedelta(seconds=5)),
    ("L03", T0 + timedelta(seconds=5)),
    ("L05", T0 + timedelta(seconds=5)),
    ("L07", T0 + timedelta(seconds=9)),
    ("L99", T0 + timedelta(hours=2)),
]
IN_WINDOW = ["L01", "L02", "L03", "L04", "L05", "L06", "L07"]

#: How each style's fake CRM writes a modification time (every form the connector reads).
TIME_FORMS = {
    "body_cursor": lambda t: int(t.timestamp() * 1000),  # epoch milliseconds
    "query_cursor": lambda t: int(t.timestamp()),  # epoch seconds
    "next_url": lambda t: t.replace(tzinfo=None).isoformat(),  # naive: UTC
    "offset": lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ"),
    "none": lambda t: t.astimezone(UTC).replace(tzinfo=None).isoformat() + "+00:00",
}


def _crm(**rest: Any) -> CrmConfig:
    return CrmConfig.model_validate({"kind": "rest", "url": URL, "auth": "none", "page_size": 3, "rest": rest})


def _ordered(leads=LEADS) -> list[tuple[str, datetime]]:
    return sorted(leads, key=lambda r: (r[1], r[0]))


def _item(lead: tuple[str, datetime], form) -> dict[str, Any]:
    return {"id": lead[0], "updated_at": form(lead[1]), "status": "open"}


def _pull(crm: CrmConfig, handler, known_ids=None) -> list:
    with json_client(crm, transport=httpx.MockTransport(handler), sleep=lambda s: None) as client:
        return list(connector_for(crm).pull(client, SINCE, UNTIL, known_ids))


# -- push ------------------------------------------------------------------------------------


def test_default_push_is_todays_patch():
    scores = pd.DataFrame({"id": ["a/b"], "score": [80], "bucket": ["HOT"], "recommended_action": ["Call"]})
    payload = crm_payloads(scores, "id")[0]
    request = Rest(URL).push_request("a/b", payload["custom_fields"])
    assert request == PushRequest("PATCH", "/leads/a%2Fb", payload)  # {"lead_id": ..., "custom_fields": {...}} exactly


def test_push_templates_fill_id_and_fields():
    crm = _crm(
        push_method="PUT",
        push_url="/v2/contacts/{id}/score",
        push_body={"data": {"ref": "{id}", "attributes": "{fields}", "note": "scored lead {id}", "tags": ["{id}"]}},
    )
    request = connector_for(crm).push_request("7 7", {"predictive_score": 80})
    assert (request.method, request.path) == ("PUT", "/v2/contacts/7%207/score")
    assert request.body == {
        "data": {"ref": "7 7", "attributes": {"predictive_score": 80}, "note": "scored lead 7 7", "tags": ["7 7"]}
    }
    with pytest.raises(ConfigError, match=r"crm\.rest\.push_url: unknown placeholder\(s\) \{lead\}"):
        connector_for(_crm(push_url="/leads/{lead}"))


def test_one_pushed_field_can_go_to_its_own_place_in_the_body():
    crm = _crm(push_body={"probability": "{fields.lead_score}", "rating": "{fields.bucket}", "custom_fields": "{fields}"})
    request = connector_for(crm).push_request("9", {"lead_score": 80, "bucket": "HOT"})
    assert request.body == {"probability": 80, "rating": "HOT", "custom_fields": {"lead_score": 80, "bucket": "HOT"}}
    # a control lead of the A/B test (experiment.control_crm: marker) carries only its marker:
    # the members that are one absent field are left out, not a refusal of every push
    marker = connector_for(crm).push_request("9", {"scoring_group": "control"})
    assert marker.body == {"custom_fields": {"scoring_group": "control"}}
    inside = _crm(push_body={"note": "score {fields.lead_score}", "custom_fields": "{fields}"})
    with pytest.raises(ConfigError, match=r"\{fields\.lead_score\} names no pushed field of lead 9"):
        connector_for(inside).push_request("9", {"scoring_group": "control"})  # inside a text: no value to leave out
    with pytest.raises(ConfigError, match=r"unknown placeholder\(s\) \{score\.x\}"):
        connector_for(_crm(push_body={"x": "{score.x}"}))


def test_a_push_body_naming_a_field_that_is_never_pushed_is_refused_when_the_configuration_loads(make_project):
    """A typo in ``{fields.NAME}`` is found at load, not by the first push."""
    body = {"probability": "{fields.lead_scor}", "custom_fields": "{fields}"}
    path = make_project(crm={"kind": "rest", "url": "http://127.0.0.1:9", "rest": {"push_body": body}})
    with pytest.raises(ConfigError, match=r"crm\.rest\.push_body: \{fields\.lead_scor\} names no pushed field; pushed: \["):
        load_config(path)
    body["probability"] = "{fields.scoring_group}"  # the A/B test's marker is a pushed field too
    assert load_config(make_project(crm={"kind": "rest", "url": "http://127.0.0.1:9", "rest": {"push_body": body}})).crm


def test_push_through_the_crm_section_with_a_header_token(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_CRM_KEY", TOKEN)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    crm = CrmConfig.model_validate(
        {
            "kind": "rest",
            "url": URL,
            "auth": "header",
            "auth_header": "X-Api-Key",
            "token_env": "TEST_CRM_KEY",
            "rest": {"push_method": "POST", "push_url": "/contacts/{id}", "push_body": {"scores": "{fields}"}},
        }
    )
    scores = pd.DataFrame(
        {"id": ["L1", "L2"], "score": [80, 20], "bucket": ["HOT", "COLD"], "recommended_action": ["Call", "Mail"]}
    )
    transport = httpx.MockTransport(handler)
    state = tmp_path / "state.jsonl"
    assert push_scores(scores, crm=crm, state_file=state, transport=transport).sent == 2
    assert {(r.method, str(r.url)) for r in seen} == {("POST", f"{URL}/contacts/L1"), ("POST", f"{URL}/contacts/L2")}
    for r in seen:
        assert r.headers["x-api-key"] == TOKEN and "authorization" not in r.headers and r.headers["idempotency-key"]
        assert set(json.loads(r.content)["scores"]) == {"predictive_score", "score_bucket", "recommended_action"}
    assert push_scores(scores, crm=crm, state_file=state, transport=transport).skipped == 2  # unchanged: not resent
    other = push_scores(scores, "https://other.test/crm", crm=crm, state_file=state, transport=transport)
    assert other.sent == 2 and str(seen[-1].url).startswith("https://other.test/crm/contacts/")  # --crm-url wins


# -- credentials -----------------------------------------------------------------------------


def test_auth_headers(monkeypatch):
    monkeypatch.setenv("CRM_T", "user:pa:ss")
    crm = CrmConfig.model_validate({"url": URL, "token_env": "CRM_T"})
    assert auth_headers(crm) == {"Authorization": "Bearer user:pa:ss"}
    assert auth_headers(crm.model_copy(update={"auth": "header", "auth_header": "api-key"})) == {"api-key": "user:pa:ss"}
    basic = auth_headers(crm.model_copy(update={"auth": "basic"}))["Authorization"]
    assert basic == "Basic " + base64.b64encode(b"user:pa:ss").decode()
    assert auth_headers(crm.model_copy(update={"auth": "none"})) == {}
    monkeypatch.delenv("LEADSCORING_CRM_TOKEN", raising=False)
    assert auth_headers(None) == {}  # --crm-url alone: the bearer token only when set
    monkeypatch.setenv("CRM_T", "no-colon-here")
    with pytest.raises(ConfigError, match="CRM_T must hold user:password") as err:
        auth_headers(crm.model_copy(update={"auth": "basic"}))
    assert "no-colon-here" not in str(err.value)
    monkeypatch.delenv("CRM_T")
    with pytest.raises(ConfigError, match="CRM_T is not set") as err:
        auth_headers(crm)
    assert len(str(err.value).splitlines()) == 1


def test_credentials_never_in_logs_or_errors(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("CRM_T", TOKEN)
    encoded = base64.b64encode(f"me:{TOKEN}".encode()).decode()
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] % 2:
            return httpx.Response(429, headers={"Retry-After": "0"})
        return httpx.Response(403, json={"message": "forbidden"})

    errors = []
    for auth in ("bearer", "basic", "header"):
        crm = CrmConfig.model_validate({"url": URL, "token_env": "CRM_T", "auth": auth, "rest": {"pull": {"url": "/leads"}}})
        if auth == "basic":
            monkeypatch.setenv("CRM_T", "me:" + TOKEN)
        with pytest.raises(CrmError) as err:
            _pull(crm, handler)
        errors.append(str(err.value))
        summary = push_scores(
            pd.DataFrame({"id": ["L1"], "score": [1], "bucket": ["COLD"], "recommended_action": ["Mail"]}),
            crm=crm,
            state_file=tmp_path / "s.jsonl",
            backoff=0,
            transport=httpx.MockTransport(handler),
        )
        errors += list(summary.failures.values()) + [str(summary)]
    text = caplog.text + "\n".join(errors)
    assert "HTTP 403" in text and "retrying" in text  # the failures were logged and reported ...
    assert TOKEN not in text and encoded not in text and "S3CRET" not in text  # ... without the credentials


# -- pull: paging ----------------------------------------------------------------------------


def _paged_crm(style: str):
    """(rest settings, handler) of a fake CRM paging in ``style`` (3 leads a page); cursor
    styles repeat the previous page's last lead first (an inclusive cursor)."""
    form = TIME_FORMS[style]
    ordered = _ordered()
    calls: list[httpx.Request] = []

    def page(start: int) -> list[dict[str, Any]]:
        first = max(0, start - 1)  # the boundary lead again
        return [_item(lead, form) for lead in ordered[first : start + 3]]

    if style == "body_cursor":
        rest = {"url": "/search", "method": "POST", "body": {"after": "{cursor}", "limit": "{page_size}"}, "paging": style}
        rest |= {"cursor_path": "paging.next.after", "items_path": "results"}

        def handler(request):
            calls.append(request)
            body = json.loads(request.content)
            assert body["limit"] == 3
            start = int(body["after"] or 0)
            nxt = {"next": {"after": str(start + 3)}} if start + 3 < len(ordered) else {}
            return httpx.Response(200, json={"results": page(start), "paging": nxt})

    elif style == "query_cursor":
        rest = {
            "url": "/leads?limit={page_size}&cursor={cursor}",
            "paging": style,
            "cursor_path": "meta.cursor",
            "items_path": "data",
        }

        def handler(request):
            calls.append(request)
            cursor = request.url.params["cursor"]
            start = int(cursor.split(":")[1].split("/")[0]) if cursor else 0
            nxt = f"after:{start + 3}/=" if start + 3 < len(ordered) else None
            return httpx.Response(200, json={"data": page(start), "meta": {"cursor": nxt}})

    elif style == "next_url":
        rest = {"url": "/leads?updated_since={since}", "paging": style, "next_url_path": "links.next", "items_path": "items"}

        def handler(request):
            calls.append(request)
            start = int(request.url.params.get("start", 0))
            links = {}
            if start + 3 < len(ordered):  # a relative link, then an absolute one
                links["next"] = f"leads?start={start + 3}" if start == 0 else f"{URL}/leads?start={start + 3}"
            return httpx.Response(200, json={"items": page(start), "links": links})

    elif style == "offset":
        # filters modified >= since and sorts by (modified, id), as offset paging asks
        rest = {"url": "/leads?since={since}&offset={offset}&limit={page_size}", "paging": style}
        leads = list(LEADS)

        def handler(request):
            calls.append(request)
            if len(calls) == 2:  # L01 is changed while the pull runs: it moves to the end
                leads[1] = ("L01", T0 + timedelta(minutes=30))
            since = datetime.fromisoformat(request.url.params["since"])
            offset = int(request.url.params["offset"])
            rows = [lead for lead in _ordered(leads) if lead[1] >= since][offset : offset + 3]
            return httpx.Response(200, json=[_item(lead, form) for lead in rows])

    else:  # none: every lead on one page
        rest = {"url": "/leads", "paging": style}

        def handler(request):
            calls.append(request)
            return httpx.Response(200, json=[_item(lead, form) for lead in ordered])

    return rest, handler, calls


@pytest.mark.parametrize("style", sorted(TIME_FORMS))
def test_each_paging_style_reads_the_window_once(style):
    rest, handler, calls = _paged_crm(style)
    records = _pull(_crm(pull=rest), handler)
    ids = [r.lead_id for r in records]
    if style == "offset":  # L01, changed during the pull, comes last with its new time
        assert ids == [*IN_WINDOW[1:], "L01"] and records[-1].modified_at == T0 + timedelta(minutes=30)
    else:
        assert ids == IN_WINDOW  # the tie at the page boundary: nothing skipped, nothing twice
        assert [r.modified_at for r in records] == [t for i, t in _ordered() if i in IN_WINDOW]
    assert all(r.modified_at.tzinfo is not None and r.fields == {"status": "open"} for r in records)
    assert len(calls) == {"none": 1}.get(style, 3)  # offset: its third page reaches past the window


def test_offset_pages_start_at_the_last_time_read():
    rest, handler, calls = _paged_crm("offset")
    _pull(_crm(pull=rest), handler)
    asked = [(r.url.params["since"], r.url.params["offset"]) for r in calls]
    t5 = (T0 + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert asked[:3] == [("2026-03-01T09:00:00Z", "0"), (t5, "1"), (t5, "4")]  # skips only the leads read at that time


def test_poll_known_ids_reads_each_lead():
    crm = _crm(pull={"url": "/leads/{id}", "poll_known_ids": True, "items_path": "lead"}, deleted_path="archived")
    asked = []

    def handler(request):
        lead_id = request.url.path.rsplit("/", 1)[1]
        asked.append(lead_id)
        found = dict(_ordered()).get(lead_id)
        if found is None:
            return httpx.Response(404, json={"error": "not found"})
        lead = {"id": lead_id, "updated_at": found.isoformat(), "archived": lead_id == "L05"}
        return httpx.Response(200, json={"lead": lead if lead_id == "L05" else lead | {"status": "won"}})

    records = _pull(crm, handler, known_ids=["L05", "L99", "gone", "L02", "L05"])
    got = [(r.lead_id, r.deleted, r.gone) for r in records]
    assert got == [("L02", False, False), ("L05", True, False), ("gone", True, True)]  # L99: outside the window
    assert records[0].fields == {"status": "won"} and records[1].fields == {"status": None}  # deleted: status optional
    assert records[2].modified_at == UNTIL and records[2].fields == {}  # 404: only its absence, as of the pull's until
    assert asked == ["L02", "L05", "L99", "gone"]


def test_record_paths_statuses_and_outcome_time():
    crm = _crm(
        pull={"url": "/leads", "items_path": "data.0.rows"},
        id_path="ref.0",
        modified_path="meta.changed",
        outcome_time_path="closed_on",
        status_paths={"stage": "pipeline.stage", "won": "flags.won"},
    )
    row = {"ref": [42], "meta": {"changed": "2026-03-01T10:30:00+01:00"}, "pipeline": {"stage": "Won"}, "flags": {"won": True}}
    answer = {"data": [{"rows": [row | {"closed_on": 1772355600}]}]}
    (record,) = _pull(crm, lambda r: httpx.Response(200, json=answer))
    assert (record.lead_id, record.modified_at) == ("42", T0 + timedelta(minutes=30))
    assert record.fields == {"stage": "Won", "won": True} and record.outcome_at == datetime.fromtimestamp(1772355600, UTC)


# -- pull: one-line errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ([{"id": "L01", "updated_at": "2026-03-01T09:00:01Z", "status": "open"}, {"id": "L02", "status": "open"}],
         "rest: lead L02: no 'updated_at' in its record (crm.rest.modified_path)"),
        ([{"updated_at": "2026-03-01T09:00:01Z"}], "rest: page 1, lead #1: no 'id' in the record (crm.rest.id_path)"),
        ([{"id": "L01", "updated_at": "2026-03-01T09:00:01Z"}], "rest: lead L01: no 'status' in its record (crm.rest.status_paths"),
        ([{"id": "L01", "updated_at": "yesterday", "status": "open"}], "rest: lead L01: 'updated_at' is 'yesterday', not a time"),
        ({"rows": []}, "rest: page 1: no 'data' in the answer (crm.rest.pull.items_path)"),
    ],
)  # fmt: skip
def test_missing_json_path_is_one_line(answer, expected):
    items_path = "data" if isinstance(answer, dict) else ""
    with pytest.raises(CrmError) as err:
        _pull(_crm(pull={"url": "/leads", "items_path": items_path}), lambda r: httpx.Response(200, json=answer))
    assert str(err.value).startswith(expected) and len(str(err.value).splitlines()) == 1


def test_unauthorised_and_non_json_answers_are_one_line(monkeypatch):
    monkeypatch.setenv("CRM_T", TOKEN)
    crm = CrmConfig.model_validate({"url": URL, "token_env": "CRM_T", "rest": {"pull": {"url": "/leads?since={since}"}}})
    with pytest.raises(CrmError) as err:
        _pull(crm, lambda r: httpx.Response(401, json={"message": "invalid token"}))
    text = str(err.value)
    assert text.startswith("rest: GET /api/leads") and "HTTP 401" in text and "invalid token" in text
    assert len(text.splitlines()) == 1 and TOKEN not in text
    html = httpx.Response(200, headers={"Content-Type": "text/html"}, content=b"<html>Sign in</html>")
    with pytest.raises(CrmError, match=r"^rest: GET /api/leads .*answer is text/html, not JSON"):
        _pull(crm, lambda r: html)


def test_paging_that_does_not_move_on_stops():
    rest = {"url": "/leads?offset={offset}", "paging": "offset"}
    same = [{"id": "L01", "updated_at": "2026-03-01T09:00:01Z", "status": "open"}]
    with pytest.raises(CrmError, match="page 2 holds only leads already read"):
        _pull(_crm(pull=rest), lambda r: httpx.Response(200, json=same))  # a CRM ignoring {offset}
    with pytest.raises(ConfigError, match=r"crm\.rest\.pull\.cursor_path: required by paging query_cursor"):
        connector_for(_crm(pull={"url": "/leads?c={cursor}", "paging": "query_cursor"}))


# -- crm check -------------------------------------------------------------------------------


class _Crm(ThreadingHTTPServer):
    """A loopback CRM: ``/leads/{id}`` written with PATCH (only the custom fields it ``knows``
    are kept, others dropped in silence, answered 200) and read with GET."""

    daemon_threads = True


class _CrmHandler(BaseHTTPRequestHandler):
    def do_PATCH(self):  # noqa: N802 - http.server API
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv.requests.append((self.path, dict(self.headers), body))
        fields = srv.leads.setdefault(self.path.rsplit("/", 1)[1], {})
        fields.update({k: v for k, v in body["custom_fields"].items() if k in srv.knows})
        self._answer({"ok": True})

    def do_GET(self):  # noqa: N802 - http.server API
        lead_id = self.path.rsplit("/", 1)[1]
        self._answer({"id": lead_id, "custom_fields": self.server.leads.get(lead_id, {})})

    def _answer(self, data):
        raw = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


@pytest.fixture()
def loopback_crm():
    started = []

    def start(knows):
        server = _Crm(("127.0.0.1", 0), _CrmHandler)
        server.requests, server.leads, server.knows = [], {}, set(knows)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        started.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def _project(tmp_path, url, **crm):
    config = write_project(tmp_path, crm={"kind": "rest", "url": url, **crm})
    scores = tmp_path / "scores.csv"
    pd.DataFrame(
        {"id": ["L001", "L002"], "score": [80, 30], "bucket": ["HOT", "COLD"], "recommended_action": ["Call", "Mail"]}
    ).to_csv(scores, index=False)
    fields = load_config(config).scoring.crm_fields
    return config, scores, fields


def test_crm_check_finds_a_field_the_crm_drops(tmp_path, loopback_crm, monkeypatch, capsys):
    monkeypatch.setenv("TEST_CRM_KEY", TOKEN)
    server, url = loopback_crm(knows=[])
    config, scores, fields = _project(tmp_path, url, auth="header", auth_header="X-Api-Key", token_env="TEST_CRM_KEY")
    server.knows = {fields["score"], fields["recommended_action"]}  # the bucket's custom field does not exist there
    args = ["--config", str(config), "crm", "check", "--lead", "L001", "--scores", str(scores)]
    assert main(args) == 1
    out = capsys.readouterr().out.strip().splitlines()
    dropped = [line for line in out if "answered 2xx" in line]
    assert len(dropped) == 1 and f"field '{fields['bucket']}' is absent" in dropped[0] and "lead L001" in dropped[0]
    assert [p for p, _, _ in server.requests] == ["/leads/L001"] and server.requests[0][1]["X-Api-Key"] == TOKEN
    server.leads["L002"] = {fields["bucket"]: "WARM"}  # a value the CRM keeps whatever is written
    assert main([*args[:-3], "L002", *args[-2:]]) == 1
    assert f"field '{fields['bucket']}' is unchanged (wrote 'COLD', read 'WARM')" in capsys.readouterr().out
    server.knows.add(fields["bucket"])
    assert main(args) == 0
    assert "3 field(s) pushed and read back unchanged" in capsys.readouterr().out


def test_crm_check_compares_the_status_map(tmp_path, loopback_crm, monkeypatch, capsys):
    _, url = loopback_crm(knows=[])
    monkeypatch.setattr(Rest, "status_values", lambda self, client: {"status": ["new", "working", "won", "lost"]})
    status_map = {"converted": [{"status": "won"}], "lost": [{"status": ["lost", "lsot"]}]}
    config, _, _ = _project(tmp_path, url, auth="none", status_map=status_map)
    assert main(["--config", str(config), "crm", "check"]) == 1
    out = capsys.readouterr().out
    assert "values the CRM does not have: ['lsot']" in out
    assert "CRM values the map does not know: ['new', 'working'] (counted as crm.unmapped: warn)" in out
    crm = CrmConfig.model_validate(
        {"url": url, "auth": "none", "status_map": {"converted": [{"status": "won"}]}, "unmapped": "fail"}
    )
    with json_client(crm) as client:
        report = check_status_values(connector_for(crm), client, crm.status_map, crm.unmapped)
    assert report.problems == 1 and "'lost', 'new', 'working'" in report.lines[0]  # unmapped: fail makes them a problem


def test_push_cli_uses_the_crm_section(tmp_path, loopback_crm, monkeypatch, capsys):
    server, url = loopback_crm(knows=[])
    monkeypatch.delenv("TEST_CRM_KEY", raising=False)
    config, scores, _ = _project(tmp_path, url, auth="header", auth_header="X-Api-Key", token_env="TEST_CRM_KEY")
    args = ["--config", str(config), "push", "--scores", str(scores), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "TEST_CRM_KEY is not set" in err and not server.requests
    monkeypatch.setenv("TEST_CRM_KEY", TOKEN)
    assert main(args) == 0 and len(server.requests) == 2
    assert all(headers["X-Api-Key"] == TOKEN for _, headers, _ in server.requests)
    assert (tmp_path / "02_Datos" / "crm_state" / "push-state.jsonl").is_file()  # the project's push state
    assert main(args) == 0 and len(server.requests) == 2  # nothing changed: nothing resent
    other, other_url = loopback_crm(knows=[])
    assert main([*args, "--crm-url", other_url]) == 0 and len(other.requests) == 2  # --crm-url in place of crm.url


@pytest.mark.parametrize("kind", ["hubspot", "salesforce", "dynamics", "pipedrive", "odoo", "rest"])
def test_registry_builds_each_kind(kind):
    connector = connector_for(CrmConfig.model_validate({"kind": kind, "url": URL}))
    assert connector.kind == kind and callable(connector.push_request)


def test_rest_kind_refuses_options():
    with pytest.raises(ConfigError, match=r"crm\.options: not read for kind rest"):
        connector_for(CrmConfig.model_validate({"kind": "rest", "url": URL, "options": {"model": "x"}}))
