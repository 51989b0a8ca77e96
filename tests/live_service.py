"""The scoring service on a real uvicorn server on loopback, for the tests that need real HTTP
(hot reload, slow clients, the loop's day 2)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from leadscoring.config import ProjectConfig
from leadscoring.serving.service import server_options

WAIT = 30.0  # longest wait for the server to start or stop (a bound, not an expectation)


@contextlib.contextmanager
def served(app: FastAPI, cfg: ProjectConfig) -> Iterator[str]:
    """``app`` served with ``cfg``'s server options on 127.0.0.1 (a free port; lifespan on, so
    the reload watcher runs); yields its base URL and stops the server after."""
    srv = uvicorn.Server(uvicorn.Config(app, log_config=None, **server_options(cfg)))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not srv.started and time.monotonic() < deadline:
        assert thread.is_alive(), "the server stopped while starting"
        time.sleep(0.05)
    assert srv.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(WAIT)
