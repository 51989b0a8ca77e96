"""`leadscoring push` against real local HTTP servers: state per destination, idempotency
keys, a closed port and a hanging CRM, Retry-After, and one-line errors for bad scores files."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from leadscoring.cli import main
from leadscoring.loop.crm import CIRCUIT_OPEN, destination, push_scores, retry_after_seconds

from .conftest import CONFIG


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):  # a client that timed out closed its socket
        pass


class _Recorder(BaseHTTPRequestHandler):
    """Accepts every PATCH and records (path, Idempotency-Key, body); behaviour per server:
    ``hang`` sleeps before answering, ``retry_after`` answers the first request 429 with it."""

    def do_PATCH(self):  # noqa: N802 - http.server API
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.requests.append((self.path, self.headers.get("Idempotency-Key"), body))
            first = len(srv.requests) == 1
        if srv.hang:
            srv.release.wait(srv.hang)
        if first and srv.retry_after:
            self.send_response(429)
            self.send_header("Retry-After", srv.retry_after)
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def _start(hang: float = 0.0, retry_after: str | None = None):
    server = _Server(("127.0.0.1", 0), _Recorder)
    server.lock, server.requests, server.release = threading.Lock(), [], threading.Event()
    server.hang, server.retry_after = hang, retry_after
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
    assert push_scores(path, url).sent == 3 and len(server.requests) == 6


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


def test_retry_after_date_is_honoured_and_capped(servers, tmp_path):
    in_an_hour = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    server, url = servers(retry_after=in_an_hour)
    t0 = time.perf_counter()
    summary = push_scores(_scores(1), url, state_file=tmp_path / "s.jsonl", max_backoff=0.3)
    assert summary.sent == 1 and len(server.requests) == 2
    assert 0.3 <= time.perf_counter() - t0 < 2


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("id,score,bucket\n1,50,WARM\n", "missing column(s) ['recommended_action']"),
        ("id;score;bucket;recommended_action\n1;50;WARM;Mail\n", "comma-separated"),
        ("", "empty"),
        ("id,score,bucket,recommended_action\n", "no scores"),
        ("id,score,bucket,recommended_action\n1,high,WARM,Mail\n", "whole numbers"),
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
