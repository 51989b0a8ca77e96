"""A webhook receiver on loopback for the alert tests (Slack-compatible JSON POSTs)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

SECRET = "/services/T0001/B0002/not-a-real-token"  # the path of a Slack-like webhook URL: never logged


class Receiver:
    """A webhook on 127.0.0.1: records each JSON body, answers the next of ``statuses``
    (then 200) after ``delay`` seconds; ``finished`` is set when a handler has answered."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.statuses: list[int] = []
        self.delay = 0.0
        self.finished = threading.Event()
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.changed:
                    receiver.bodies.append(body)
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.changed.notify_all()
                if receiver.delay:
                    time.sleep(receiver.delay)  # the deliberately slow receiver
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                receiver.finished.set()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self) -> list[str]:
        with self.changed:
            return [b["text"] for b in self.bodies]

    def wait_for(self, n: int, timeout: float = 10.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.bodies) >= n, timeout)


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()
