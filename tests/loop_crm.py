"""A recorded home-grown CRM on loopback for the nightly cycle's tests and benchmark: leads
with a status and custom fields, listed by modification time (keyset paging on (modified,
id) with ``{offset}``), written with ``PATCH /api/leads/{id}``; and the ``crm:`` section that
configures leadscoring's ``rest`` connector for it.

What a sales user does (``set_status``) stamps the lead with the server's clock; a push writes
the custom fields without touching the modification time (as many CRMs do for API-written
custom fields). ``kill_at`` sends SIGTERM to a process when a request of a kind arrives (the
``n``-th list page or push), so a test stops a cycle in the middle of its pull or push."""

from __future__ import annotations

import copy
import json
import os
import signal
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: Status -> outcome, the section's status map.
STATUS_MAP = {"converted": [{"status": "won"}], "lost": [{"status": "lost"}], "open": [{"status": ["new", "working"]}]}


def crm_section(url: str, page_size: int = 500) -> dict[str, Any]:
    """The ``crm:`` section for a :class:`LoopCrm` at ``url`` (no credentials)."""
    return {
        "kind": "rest",
        "url": url,
        "auth": "none",
        "unmapped": "fail",
        "overlap_seconds": 60,
        "page_size": page_size,
        "status_map": STATUS_MAP,
        "rest": {
            "push_url": "/api/leads/{id}",
            "pull": {
                "url": "/api/leads?since={since}&until={until}&limit={page_size}&offset={offset}",
                "paging": "offset",
                "items_path": "items",
            },
            "id_path": "id",
            "modified_path": "updated_at",
            "status_paths": {"status": "status"},
        },
    }


@dataclass
class _Lead:
    status: str
    updated_at: datetime
    custom_fields: dict[str, Any] = field(default_factory=dict)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class LoopCrm(ThreadingHTTPServer):
    """The CRM (see the module): ``leads`` by id, ``pushes`` (lead id -> times written),
    ``requests`` (kind -> count)."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64  # a push's connections all at once

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.leads: dict[str, _Lead] = {}
        self.pushes: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.kill: tuple[str, int, int] | None = None
        self.list_status: int | None = None  # set: list requests are refused with this status
        self._last = datetime.now(UTC) - timedelta(seconds=1)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:  # a client stopped mid-request
        pass

    def _stamp(self) -> datetime:
        """Now by the server's clock, strictly after the previous stamp."""
        now = max(datetime.now(UTC), self._last + timedelta(microseconds=1))
        self._last = now
        return now

    def add(
        self, ids: list[str], status: str = "new", at: datetime | None = None, step: timedelta = timedelta(microseconds=1)
    ) -> None:
        """New leads, stamped now (or from ``at`` on, ``step`` apart: leads made before)."""
        with self.lock:
            for n, i in enumerate(ids):
                self.leads[i] = _Lead(status, self._stamp() if at is None else at + n * step)

    def set_status(self, lead_id: str, status: str) -> None:
        with self.lock:
            lead = self.leads[lead_id]
            lead.status, lead.updated_at = status, self._stamp()

    def snapshot(self) -> tuple[dict[str, _Lead], Counter[str]]:
        """The leads and pushes as they are now (for :meth:`restore`)."""
        with self.lock:
            return copy.deepcopy(self.leads), copy.deepcopy(self.pushes)

    def restore(self, snapshot: tuple[dict[str, _Lead], Counter[str]]) -> None:
        """Back to a :meth:`snapshot`: its leads and pushes, no request counted, no kill set."""
        with self.lock:
            self.leads, self.pushes = copy.deepcopy(snapshot[0]), copy.deepcopy(snapshot[1])
            self.requests.clear()
            self.kill = None

    def kill_at(self, kind: str, n: int, pid: int) -> None:
        """SIGTERM to ``pid`` when the ``n``-th request of ``kind`` (``list`` or ``push``) arrives."""
        self.kill = (kind, n, pid)

    def count(self, kind: str) -> None:
        with self.lock:
            self.requests[kind] += 1
            hit = self.kill is not None and self.kill[0] == kind and self.requests[kind] == self.kill[1]
        if hit and self.kill is not None:
            os.kill(self.kill[2], signal.SIGTERM)

    def page(self, since: datetime, until: datetime, limit: int, offset: int) -> list[dict[str, Any]]:
        with self.lock:
            rows = sorted((v.updated_at, k) for k, v in self.leads.items() if since <= v.updated_at <= until)
            return [{"id": k, "status": self.leads[k].status, "updated_at": _iso(t)} for t, k in rows[offset : offset + limit]]

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: LoopCrm
    protocol_version = "HTTP/1.1"  # connections kept alive, as a CRM's
    disable_nagle_algorithm = True  # headers and body leave at once, as a CRM's web server sends them

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        parts = urlsplit(self.path)
        if parts.path != "/api/leads":
            self._answer(404, {"error": "not found"})
            return
        self.server.count("list")
        if self.server.list_status is not None:
            self._answer(self.server.list_status, {"error": "token expired"})
            return
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        since = datetime.fromisoformat(q["since"].replace("Z", "+00:00"))
        until = datetime.fromisoformat(q["until"].replace("Z", "+00:00"))
        self._answer(200, {"items": self.server.page(since, until, int(q["limit"]), int(q["offset"]))})

    def do_PATCH(self) -> None:  # noqa: N802 - http.server API
        lead_id = urlsplit(self.path).path.rsplit("/", 1)[-1]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.count("push")
        with self.server.lock:
            lead = self.server.leads.get(lead_id)
            if lead is not None:
                lead.custom_fields.update(body["custom_fields"])
                self.server.pushes[lead_id] += 1
        if lead is None:
            self._answer(404, {"error": f"no lead {lead_id}"})
        else:
            self._answer(200, {"id": lead_id})
