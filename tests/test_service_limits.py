"""The service against slow and hostile clients, on a real uvicorn server on loopback: request
headers and bodies have deadlines (one log line per client, no traceback), a client leaving
mid-body is one log line; an empty token refuses to start, no token is a warning; the CLI
refuses a port outside 1-65535."""

from __future__ import annotations

import logging
import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi.testclient import TestClient

from leadscoring.cli import build_parser, main
from leadscoring.config import ConfigError, ServiceConfig
from leadscoring.serving.scorer import Scorer
from leadscoring.serving.service import TOKEN_ENV, create_app

from .conftest import CONFIG
from .live_service import served

TIMEOUT = 1.0  # header and body deadline of the test server, seconds
WAIT = 20.0  # longest wait for anything in these tests (a bound, not an expectation)
HEADERS = b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"


@pytest.fixture(scope="module")
def server(cfg, small_models) -> Iterator[int]:
    """A real uvicorn server with the service's settings on 127.0.0.1; yields its port."""
    limited = cfg.model_copy(update={"service": ServiceConfig(header_timeout=TIMEOUT, body_timeout=TIMEOUT)})
    with served(create_app(limited, Scorer.load(cfg, small_models)), limited) as url:
        yield int(url.rsplit(":", 1)[1])


def _connect(port: int, data: bytes) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    conn.sendall(data)
    return conn


def _answer(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a socket timeout fails)."""
    received = b""
    while chunk := conn.recv(65536):
        received += chunk
    conn.close()
    return received


def _lines_about(caplog: pytest.LogCaptureFixture, conn_port: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if f":{conn_port}:" in r.getMessage()]


def _no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def _health(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=WAIT) as r:
        return r.status


def test_a_slow_body_is_answered_408_and_the_connection_closed(server, caplog):
    caplog.set_level(logging.INFO)
    conns = [_connect(server, HEADERS + b'{"id":') for _ in range(3)]  # 6 of 100 bytes, then nothing
    ports = [c.getsockname()[1] for c in conns]
    answers = [_answer(c) for c in conns]
    assert all(a.startswith(b"HTTP/1.1 408 ") and b"service.body_timeout" in a for a in answers), answers
    for port in ports:
        assert len(_lines_about(caplog, port)) == 1, caplog.text
    _no_traceback(caplog)
    assert _health(server) == 200


def test_slow_headers_are_closed(server, caplog):
    caplog.set_level(logging.INFO)
    conn = _connect(server, b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never finished
    port = conn.getsockname()[1]
    assert _answer(conn) == b""  # closed without an answer
    assert [m for m in _lines_about(caplog, port) if "headers" in m] == _lines_about(caplog, port)
    assert len(_lines_about(caplog, port)) == 1
    _no_traceback(caplog)
    assert _health(server) == 200


def test_a_client_leaving_mid_body_is_one_line(server, caplog):
    caplog.set_level(logging.INFO)
    conn = _connect(server, HEADERS + b'{"id":')
    port = conn.getsockname()[1]
    time.sleep(0.2)  # let the server start reading the body (either way the test holds)
    conn.close()
    deadline = time.monotonic() + WAIT
    while not _lines_about(caplog, port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_lines_about(caplog, port)) == 1, caplog.text
    _no_traceback(caplog)


def test_an_empty_token_refuses_to_start(cfg, small_models, monkeypatch, capsys):
    started: list[int] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: started.append(1))
    for blank in ("", "   "):
        monkeypatch.setenv(TOKEN_ENV, blank)
        with pytest.raises(ConfigError, match=TOKEN_ENV):
            create_app(cfg, Scorer.load(cfg, small_models))
        assert main(["--config", str(CONFIG), "serve"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and TOKEN_ENV in err and "Traceback" not in err
    assert not started


def test_no_token_is_a_warning_and_a_blank_one_refuses_every_call(cfg, small_models, monkeypatch, caplog):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with caplog.at_level(logging.WARNING):
        client = TestClient(create_app(cfg, Scorer.load(cfg, small_models)))
    assert any(r.levelno == logging.WARNING and TOKEN_ENV in r.getMessage() and "off" in r.getMessage() for r in caplog.records)
    monkeypatch.setenv(TOKEN_ENV, "")  # emptied after start-up: fail closed
    assert client.post("/score", json={"id": 1}).status_code == 401
    assert client.post("/score", json={"id": 1}, headers={"Authorization": "Bearer "}).status_code == 401


@pytest.mark.parametrize("port", ["99999", "65536", "0", "-1", "http"])
def test_serve_refuses_a_port_outside_1_65535(port, monkeypatch, capsys):
    import leadscoring.serving.service as service

    started: list[int] = []
    monkeypatch.setattr(service, "serve", lambda *a, **k: started.append(1))
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--port", port])
    assert exc.value.code == 2 and not started
    err = capsys.readouterr().err
    assert "--port" in err and "1-65535" in err
    assert build_parser().parse_args(["serve", "--port", "65535"]).port == 65535
