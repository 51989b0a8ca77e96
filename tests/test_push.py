"""`leadscoring push` against real local HTTP servers: state per destination, idempotency
keys, a closed port and a hanging CRM, Retry-After and rate limiting shared by the whole push,
answers that are not the CRM's (a login page, a huge or endless body), progress, and one-line
errors for bad scores files."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from leadscoring.cli import main
from leadscoring.crm.http import retry_after_seconds
from leadscoring.crm.push import CIRCUIT_OPEN, destination, push_scores

from .conftest import CONFIG


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):  # a client that timed out closed its socket
        pass


class _Recorder(BaseHTTPRequestHandler):
    """Accepts every PATCH and records (path, Idempotency-Key, body); behaviour per server:
    ``hang`` sleeps before answering; the first ``limited`` requests (default: 1 if
    ``retry_after`` is given) are answered ``status`` (429), with ``Retry-After: retry_after`` if given
    and the JSON body ``limited_answer``;
    ``answer`` = (content type, body) of the 200 answers (default: empty), sent without
    Content-Length if ``stream``; ``trickle`` sends a JSON body one byte every so many seconds
    until the server stops."""

    def do_PATCH(self):  # noqa: N802 - http.server API
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.requests.append((self.path, self.headers.get("Idempotency-Key"), body))
            limited = len(srv.requests) <= srv.limited
        if srv.hang:
            srv.release.wait(srv.hang)
        try:
            if limited:
                self.send_response(srv.status)
                if srv.retry_after:
                    self.send_header("Retry-After", srv.retry_after)
                if srv.limited_answer:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(srv.limited_answer)))
                self.end_headers()
                self.wfile.write(srv.limited_answer)
            elif srv.trickle:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"[")
                while not srv.release.wait(srv.trickle):  # ends when the server stops or the client hangs up
                    self.wfile.write(b" ")
                    self.wfile.flush()
            else:
                content_type, answer = srv.answer or (None, b"")
                self.send_response(200)
                if content_type:
                    self.send_header("Content-Type", content_type)
                if not srv.stream:
                    self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
        except OSError:  # the client hung up
            pass

    def log_message(self, *args):
        pass


def _start(
    hang: float = 0.0,
    retry_after: str | None = None,
    limited: int | None = None,
    answer: tuple[str | None, bytes] | None = None,
    stream: bool = False,
    trickle: float = 0.0,
    status: int = 429,
    limited_answer: bytes = b"",
):
    server = _Server(("127.0.0.1", 0), _Recorder)
    server.limited_answer = limited_answer
    server.lock, server.requests, server.release = threading.Lock(), [], threading.Event()
    server.hang, server.retry_after, server.answer, server.stream, server.trickle = hang, retry_after, answer, stream, trickle
    server.status = status
    server.limited = (1 if retry_after else 0) if limited is None else limited
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture()
def servers():
    started = []

    def make(**kwargs):
        server, url = _start(**kwargs)
        started.append(server)
        return server, url

    yield make
    for server in started:
        server.release.set()
        server.shutdown()
        server.server_close()


def _scores(n: int, score: int = 50) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"L{i:03d}" for i in range(n)], "score": score, "bucket": "WARM", "recommended_action": "Nurture"})


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_state_is_kept_per_destination(servers, tmp_path):
    (a, url_a), (b, url_b) = servers(), servers()
    path = tmp_path / "scores.csv"
    _scores(20).to_csv(path, index=False)
    assert push_scores(path, url_a).sent == 20
    second_crm = push_scores(path, url_b + "/")  # another CRM gets everything
    assert (second_crm.sent, second_crm.skipped) == (20, 0) and len(b.requests) == 20
    again = push_scores(path, url_a.replace("http://", "HTTP://") + "//")  # same CRM, other spelling
    assert (again.sent, again.skipped) == (0, 20) and len(a.requests) == 20
    assert destination("HTTP://CRM.example:80/api/") == "http://crm.example/api"


def test_old_state_without_destination_is_ignored(servers, tmp_path):
    server, url = servers()
    path = tmp_path / "scores.csv"
    _scores(3).to_csv(path, index=False)
    state = tmp_path / "scores.csv.push-state.jsonl"
    push_scores(path, url)
    records = [json.loads(line) for line in state.read_text().splitlines()]
    state.write_text(
        "".join(json.dumps({"lead_id": r["lead_id"], "digest": r["digest"]}) + "\n" for r in records) + '{"destination": "' + url
    )  # old format, and a line cut short by an interruption
    with state.open("ab") as fh:  # and a damaged byte before it
        fh.write(b"\xff")
    assert push_scores(path, url).sent == 3 and len(server.requests) == 6
    again = push_scores(path, url)  # each acceptance was recorded on a line of its own, none glued onto the cut one
    assert (again.sent, again.skipped) == (0, 3) and len(server.requests) == 6


def test_idempotency_key_is_stable_across_runs(servers, tmp_path):
    server, url = servers()
    scores = _scores(5)
    state = tmp_path / "state.jsonl"
    push_scores(scores, url, state_file=state)
    state.unlink()  # as if the first run had been interrupted before recording anything
    push_scores(scores, url, state_file=state)
    keys: dict[str, set] = {}
    for path, key, body in server.requests:
        assert key and len(key) >= 16 and path == f"/leads/{body['lead_id']}"
        keys.setdefault(body["lead_id"], set()).add(key)
    assert all(len(k) == 1 for k in keys.values()) and len({k for s in keys.values() for k in s}) == 5
    push_scores(scores.assign(score=90), url, state_file=state)  # a new score is a new request
    assert {k for _, k, _ in server.requests[-5:]}.isdisjoint({k for s in keys.values() for k in s})


def test_ids_are_read_as_written(servers, tmp_path):
    server, url = servers()
    path = tmp_path / "scores.csv"
    path.write_text(
        "\ufeffid,score,bucket,recommended_action\n00660728,80,HOT,Call\nNA,5,COLD,Mail\na/b,5,COLD,Mail\n", encoding="utf-8"
    )
    assert push_scores(path, url).sent == 3
    got = {body["lead_id"]: p for p, _, body in server.requests}
    assert got == {"00660728": "/leads/00660728", "NA": "/leads/NA", "a/b": "/leads/a%2Fb"}


def test_closed_port_fails_fast_and_says_not_sent(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}"
    t0 = time.perf_counter()
    summary = push_scores(_scores(50), url, state_file=tmp_path / "state.jsonl", backoff=0.2)
    assert time.perf_counter() - t0 < 3
    assert (summary.sent, summary.failed, summary.not_sent) == (0, 50, 50)
    assert set(summary.failures.values()) == {CIRCUIT_OPEN}
    assert "not sent" in str(summary)


def test_hanging_crm_timeout_is_honoured(servers, tmp_path):
    server, url = servers(hang=10)
    t0 = time.perf_counter()
    summary = push_scores(_scores(3), url, state_file=tmp_path / "s.jsonl", timeout=0.2, retries=1, backoff=0.01, max_failures=0)
    assert time.perf_counter() - t0 < 2.5
    assert summary.failed == 3 and len(server.requests) == 6  # two attempts each
    assert all("timeout" in e.lower() for e in summary.failures.values())
    t0 = time.perf_counter()
    summary = push_scores(_scores(30), url, state_file=tmp_path / "s.jsonl", timeout=0.2, backoff=0.01)
    assert time.perf_counter() - t0 < 2.5 and summary.not_sent >= 20  # the breaker stops after 5 timeouts


def test_retry_after_forms():
    now = datetime(2024, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("3", cap=30, now=now) == 3.0
    assert retry_after_seconds("3600", cap=30, now=now) == 30.0
    assert retry_after_seconds("-5", cap=30, now=now) == 0.0
    assert retry_after_seconds("Mon, 01 Jan 2024 00:00:05 GMT", cap=30, now=now) == 5.0
    assert retry_after_seconds("Sun, 31 Dec 2023 23:00:00 GMT", cap=30, now=now) == 0.0
    assert retry_after_seconds("Mon, 01 Jan 2024 02:00:00 GMT", cap=30, now=now) == 30.0
    assert retry_after_seconds("soon", cap=30, now=now) is None
    assert retry_after_seconds(None, cap=30) is None


def test_retry_after_date_is_honoured_up_to_the_cap(servers, tmp_path):
    in_two_seconds = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)  # 1 to 2 s from now
    server, url = servers(retry_after=in_two_seconds)
    t0 = time.perf_counter()
    summary = push_scores(_scores(1), url, state_file=tmp_path / "s.jsonl", max_backoff=5)
    assert summary.sent == 1 and len(server.requests) == 2
    assert time.perf_counter() - t0 >= 0.9
    in_an_hour = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    server, url = servers(retry_after=in_an_hour)
    summary = push_scores(_scores(1), url, state_file=tmp_path / "s.jsonl", max_backoff=0.3)
    assert (summary.sent, summary.failed) == (0, 1) and len(server.requests) == 1  # stopped at once, no sleeping
    assert re.search(r"the CRM asks to wait 3[56]\d\d s", str(summary))


def test_retry_after_beyond_the_cap_stops_the_push(servers, tmp_path):
    server, url = servers(retry_after="99999", limited=10**6)
    summary = push_scores(_scores(50), url, state_file=tmp_path / "s.jsonl", retries=2, max_backoff=0.5)
    assert (summary.sent, summary.failed) == (0, 50) and summary.not_sent >= 42
    assert len(server.requests) <= 8  # the requests of the first wave (concurrency 8), none retried
    text = str(summary)
    assert "the CRM asks to wait 99999 s" in text and len(text.splitlines()) == 1


def test_rate_limit_is_one_wait_for_every_worker(servers, tmp_path):
    server, url = servers(retry_after="1")  # the first request is answered 429, Retry-After: 1
    summary = push_scores(_scores(40), url, state_file=tmp_path / "s.jsonl", concurrency=4)
    assert summary.sent == 40
    leads = [body["lead_id"] for _, _, body in server.requests]
    # every worker held its next lead during the pause, so the limited lead is retried among
    # the first few requests after it (a wait per lead alone: the other workers send all 39 first)
    assert leads.index(leads[0], 1) <= 12


def test_server_errors_are_retried_then_reported(servers, tmp_path):
    server, url = servers(limited=2, status=503)  # two 503 answers without Retry-After, then accepted
    summary = push_scores(_scores(1), url, state_file=tmp_path / "s.jsonl", backoff=0.01)
    assert (summary.sent, summary.failed) == (1, 0) and len(server.requests) == 3
    server, url = servers(limited=10**6, status=503)
    summary = push_scores(_scores(2), url, state_file=tmp_path / "s.jsonl", retries=2, backoff=0.01)
    assert (summary.sent, summary.failed, summary.not_sent) == (0, 2, 0) and len(server.requests) == 6  # 3 attempts each
    assert set(summary.failures.values()) == {"HTTP 503"} and not summary.stopped  # the CRM answered: no breaker
    server, url = servers(limited=10**6, status=404)
    summary = push_scores(_scores(2), url, state_file=tmp_path / "s.jsonl", backoff=0.01)
    assert summary.failed == 2 and len(server.requests) == 2  # a 4xx is final: not retried


def test_repeated_rate_limiting_trips_the_breaker(servers, tmp_path):
    server, url = servers(limited=10**6)  # 429 without Retry-After, always
    summary = push_scores(_scores(30), url, state_file=tmp_path / "s.jsonl", concurrency=4, backoff=0.01, max_failures=3)
    assert (summary.sent, summary.failed) == (0, 30) and summary.not_sent >= 15
    assert "rate limit" in str(summary) and len(server.requests) < 30  # each lead alone would try 6 times: 180


# The CRMs' own answers once the day's request budget is spent (HubSpot's API usage guidelines;
# Salesforce's REST API errors).
HUBSPOT_DAILY = {
    "status": "error",
    "message": "You have reached your daily limit.",
    "errorType": "RATE_LIMIT",
    "policyName": "DAILY",
}
SALESFORCE_LIMIT = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]


@pytest.mark.parametrize(
    ("kind", "status", "answer", "reason"),
    [
        ("hubspot", 429, HUBSPOT_DAILY, "daily API request limit reached (DAILY)"),
        ("salesforce", 403, SALESFORCE_LIMIT, "daily API request limit reached (REQUEST_LIMIT_EXCEEDED)"),
    ],
)
def test_a_spent_daily_limit_stops_the_push_at_once(servers, tmp_path, monkeypatch, kind, status, answer, reason):
    """Every lead would be refused until the limit resets: the push stops at the first such
    answer (no retries, no request per lead), and the next push sends them all."""
    from leadscoring.config import CrmConfig

    monkeypatch.setenv("LEADSCORING_CRM_TOKEN", "secret")
    limited = 10**6
    server, url = servers(limited=limited, status=status, limited_answer=json.dumps(answer).encode())
    crm = CrmConfig.model_validate({"kind": kind, "url": url})
    state = tmp_path / "s.jsonl"
    summary = push_scores(_scores(30), crm=crm, state_file=state, concurrency=4, backoff=0.01, max_failures=0)
    assert (summary.sent, summary.failed) == (0, 30) and summary.not_sent >= 26
    assert len(server.requests) <= 4  # only the requests already in flight when the first answer came
    assert summary.stopped and reason in str(summary) and "secret" not in str(summary)
    assert sum(v.startswith(f"not sent: {reason}") for v in summary.failures.values()) == summary.not_sent
    server.limited = 0  # the next day
    assert push_scores(_scores(30), crm=crm, state_file=state, concurrency=4, backoff=0.01).sent == 30


def test_huge_or_endless_answer_is_cut(servers, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    huge = b"[" + b"0," * 4_000_000 + b"0]"  # 8 MB of JSON, without Content-Length
    server, url = servers(answer=("application/json", huge), stream=True)
    state = tmp_path / "s.jsonl"
    summary = push_scores(_scores(2), url, state_file=state)
    assert (summary.sent, summary.failed) == (0, 2) and len(server.requests) == 2  # not retried
    assert set(summary.failures.values()) == {"HTTP 200 answer larger than 1 MB: not the CRM's answer"}
    assert "lead L000 not written to the CRM: HTTP 200 answer larger than 1 MB" in caplog.text
    assert not state.exists() or not state.read_text()
    server, url = servers(trickle=0.05)  # a byte every 50 ms: no single read ever times out
    t0 = time.perf_counter()
    summary = push_scores(_scores(2), url, state_file=state, timeout=0.5, retries=0)
    assert time.perf_counter() - t0 < 5 and summary.failed == 2  # the server would go on for ever
    assert set(summary.failures.values()) == {"timeout after 0.5s"}


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("text/html; charset=utf-8", b"<html><body>Please sign in</body></html>", "HTTP 200 answer is text/html, not JSON"),
        ("application/json", b"<html><body>Please sign in</body></html>", "HTTP 200 answer is not valid JSON"),
        (None, b"OK", "HTTP 200 answer has no content type, not JSON"),
    ],
)
def test_answer_that_is_not_json_is_not_delivered(servers, tmp_path, content_type, body, expected):
    server, url = servers(answer=(content_type, body))
    state = tmp_path / "s.jsonl"
    summary = push_scores(_scores(3), url, state_file=state)
    assert (summary.sent, summary.failed) == (0, 3) and len(server.requests) == 3  # not retried
    assert all(e.startswith(expected) for e in summary.failures.values())
    assert push_scores(_scores(3), url, state_file=state).failed == 3 and len(server.requests) == 6  # not recorded as sent
    summary = push_scores(_scores(20), url, state_file=state, concurrency=2, max_failures=3)
    assert summary.not_sent >= 16 and len(server.requests) <= 6 + 4 and expected in str(summary)  # the breaker stops it
    for answer in [("application/json", b'{"id": 7}'), ("application/vnd.crm+json; charset=utf-8", b"[]"), ("text/plain", b"")]:
        _, url = servers(answer=answer)
        assert push_scores(_scores(3), url, state_file=state).sent == 3


def test_push_cli_shows_progress_and_stops_on_a_long_retry_after(servers, tmp_path, capsys):
    path = tmp_path / "scores.csv"
    _scores(20).to_csv(path, index=False)
    _, url = servers()
    assert main(["--config", str(CONFIG), "push", "--scores", str(path), "--crm-url", url]) == 0
    assert "sent 20, failed 0, remaining 0" in capsys.readouterr().err  # progress without -v
    server, url = servers(retry_after="99999", limited=10**6)
    code = main(["--config", str(CONFIG), "push", "--scores", str(path), "--crm-url", url, "--concurrency", "2", "--retries", "0"])
    out, err = capsys.readouterr()
    assert code == 1 and len(server.requests) <= 2
    assert "the CRM asks to wait 99999 s" in out.splitlines()[0]
    assert "remaining 0" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("id,score,bucket\n1,50,WARM\n", "missing column(s) ['recommended_action']"),
        ("id;score;bucket;recommended_action\n1;50;WARM;Mail\n", "comma-separated"),
        ("id;origen;visitas\n1;API;3\n2;Web, Form;4\n", "not a scores file"),  # the export pushed by mistake
        ("", "empty"),
        ("id,score,bucket,recommended_action\n", "no scores"),
        ("id,score,bucket,recommended_action\n1,high,WARM,Mail\n", "whole numbers"),
        # a spreadsheet round trip: a decimal comma, a text in a number field (an empty one is fine)
        ('id,score,bucket,recommended_action,fit_score\n1,50,WARM,Mail,\n2,50,WARM,Mail,"47,0"\n', "'fit_score'"),
        ("id,score,bucket,recommended_action,probability\n1,50,WARM,Mail,n/a\n", "line 2"),
        ("id,score,bucket,recommended_action\n1,50,WARM,Mail\n1,60,WARM,Mail\n", "duplicate id"),
    ],
)
def test_push_cli_bad_scores_file_is_one_line(tmp_path, capsys, content, expected):
    path = tmp_path / "scores.csv"
    path.write_text(content, encoding="utf-8")
    code = main(["--config", str(CONFIG), "push", "--scores", str(path), "--crm-url", "http://127.0.0.1:9"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1
    assert "scores.csv" in err and expected in err
    assert not (tmp_path / "scores.csv.push-state.jsonl").exists()


def test_push_cli_bad_url_is_one_line(tmp_path, capsys):
    path = tmp_path / "scores.csv"
    _scores(1).to_csv(path, index=False)
    code = main(["--config", str(CONFIG), "push", "--scores", str(path), "--crm-url", "crm.example/api"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "crm.example/api" in err


def test_sigterm_mid_push_stops_it_cleanly_wherever_it_lands(tmp_path, caplog):
    """A SIGTERM sent while requests are in flight (at the 1st to the 12th request, so it lands
    at many moments of the event loop) stops the push with the job's exception; the loop is
    left with no orphaned task (asyncio logs no error; a task left unwoken made the loop's
    shutdown wait forever) and the state file holds whole lines. Inside ``deferred()`` the
    push goes on and the signal waits."""
    import gc
    import os

    from leadscoring.termination import Terminated, Termination

    from .loop_crm import LoopCrm

    crm = LoopCrm()
    scores = _scores(40)
    crm.add(list(scores["id"]))
    caplog.set_level(logging.ERROR, logger="asyncio")
    try:
        for trial in range(24):
            time.sleep(0.2)  # the requests the last trial abandoned reach the CRM before its counts restart
            crm.requests.clear()
            crm.kill_at("push", 1 + trial % 12, os.getpid())
            state = tmp_path / f"state{trial}.jsonl"
            with pytest.raises(Terminated), Termination():
                push_scores(scores, crm.url, state_file=state, concurrency=8)
            text = state.read_text(encoding="utf-8") if state.exists() else ""  # (stopped before the file was opened)
            assert text.endswith("\n") or not text, trial
            assert all(json.loads(line)["lead_id"] in set(scores["id"]) for line in text.splitlines())
        gc.collect()
        assert not [r.getMessage() for r in caplog.records if r.name == "asyncio"]

        time.sleep(0.2)
        crm.requests.clear()
        crm.kill_at("push", 3, os.getpid())
        with Termination() as termination, termination.deferred():
            summary = push_scores(scores, crm.url, state_file=tmp_path / "deferred.jsonl", concurrency=8)
        assert summary.sent == 40 and termination.pending
    finally:
        crm.close()


def test_a_crm_answering_server_errors_to_every_lead_stops_the_push(servers, tmp_path):
    """HTTP 500 to everything (a CRM down behind its proxy) is a CRM that is down: after
    ``max_failures`` leads in a row whose every attempt was answered 5xx, the push stops and
    says why, instead of retrying each of the other leads (hours on a large push)."""
    server, url = servers(limited=10**6, status=500)
    summary = push_scores(_scores(60), url, state_file=tmp_path / "s.jsonl", concurrency=2, retries=2, backoff=0.01, max_failures=3)
    assert (summary.sent, summary.failed) == (0, 60) and summary.not_sent >= 50
    assert summary.stopped.startswith("CRM failing: 3 consecutive leads answered with server errors")
    assert "not sent: CRM failing" in str(summary) and len(server.requests) < 20  # 60 x 3 without
    assert "not sent: the CRM answers with server errors" in summary.failures.values()
