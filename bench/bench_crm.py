"""CRM pull benchmark (issue #22): a pull of 10,000 changed leads from a local recorded server
in at most 30 s, with its peak memory.

A real HTTP server on loopback (``http.server.ThreadingHTTPServer``, HTTP/1.1 keep-alive, in a
child process so that the pull's memory figures are the pull's alone) answers like a home-grown
CRM: ``GET /api/v1/leads?updated_since=...&updated_until=...&per_page=...`` gives
``{"data": [lead, ...], "meta": {"count": n, "next_url": "/api/v1/leads?cursor=..."}}``, sorted
by (``updated_at``, ``id``), keyset cursors in the next link, ``next_url`` null on the last page.
Its ``--leads`` leads (default 10,000) were all changed in the window: many share their
modification second (bulk updates of hundreds of leads among them, across page boundaries),
statuses are a mix of converted (``won``, ``converted``), lost (``lost``, ``closed``) and open
(``new``, ``working``, ``nurturing``), and about 0.5 % are deleted (``deleted_at`` set).

A temporary project gets a ``crm:`` section of kind ``rest`` pointing at the server
(``paging: next_url``, ``crm.page_size`` = ``--page-size``, default 200; a bearer token made
up for the run, in the environment only) and the real ``pull_outcomes(cfg)`` runs: the
connector registry, the ``rest`` connector, the JSON client, httpx over loopback, the outcome
history and the watermark. Printed:

- ``first pull``: leads read, rows appended, seconds, leads per second, requests (a cold pull:
  the connector's and tqdm's lazy imports included);
- ``second pull``: the same window again (``crm.overlap_seconds`` covers every lead, nothing
  changed): everything read again, nothing appended;
- ``peak memory``: the process's max RSS (``resource.getrusage``) before and after the first
  pull, and the tracemalloc peak of Python allocations during a third pull, the first pull
  again into a fresh project (traced, so slower: its time is not the benchmark's);
- ``target``: whether the first pull of 10,000 leads took at most 30 s;
- ``history``: whether the outcome history holds each lead once with the server's outcome.

Usage: ``nice .venv/bin/python bench/bench_crm.py [--leads 10000] [--page-size 200] [--keep] [--dir DIR]``.
Nothing is written into the checkout (the projects live in a temporary folder, removed unless
``--keep``). Exit code 1 when the history is wrong or the second pull appended anything; the
time target is reported, not enforced.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import json
import os
import random
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[1]
#: The environment variable holding the run's made-up token (the server checks it).
TOKEN_ENV = "LEADSCORING_BENCH_CRM_TOKEN"
LIST_PATH = "/api/v1/leads"
TARGET_LEADS, TARGET_SECONDS = 10_000, 30.0
#: Status -> outcome, as the project's status map says (``crm.status_map`` below).
STATUSES = {
    "won": "converted",
    "converted": "converted",
    "lost": "lost",
    "closed": "lost",
    "new": "open",
    "working": "open",
    "nurturing": "open",
}
STATUS_WEIGHTS = {"won": 12, "converted": 8, "lost": 20, "closed": 10, "new": 25, "working": 15, "nurturing": 10}
STATUS_MAP = {
    "converted": [{"status": ["won", "converted"]}],
    "lost": [{"status": ["lost", "closed"]}],
    "open": [{"status": ["new", "working", "nurturing"]}],
}


# -- the recorded CRM ---------------------------------------------------------------------------


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_leads(n: int, end: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` leads as the CRM answers them, in (``updated_at``, ``id``) order, the last changed
    at epoch second ``end``: groups changed in the same second (1-40 leads, and 3 % of groups
    bulk updates of 250-600), groups 1-60 s apart; ids unique and unrelated to time."""
    rng = random.Random(seed)
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(rng.randint(250, 600) if rng.random() < 0.03 else rng.randint(1, 40))
    sizes[-1] -= sum(sizes) - n
    times, t = [], end
    for size in reversed(sizes):
        times.append((t, size))
        t -= rng.randint(1, 60)
    ids = rng.sample(range(100_000, 100_000 + 20 * n), n)
    names, weights = list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values())
    leads: list[dict[str, Any]] = []
    k = 0
    for when, size in reversed(times):
        for lead_id in sorted(ids[k : k + size]):
            status = rng.choices(names, weights)[0]
            closed = _iso(when - rng.randint(0, 30 * 86_400)) if STATUSES[status] != "open" else None
            leads.append(
                {
                    "id": lead_id,
                    "created_at": _iso(when - rng.randint(86_400, 200 * 86_400)),
                    "updated_at": _iso(when),
                    "status": status,
                    "closed_at": closed,
                    "deleted_at": _iso(when) if rng.random() < 0.005 else None,
                    "owner": {"id": rng.randint(1, 40), "team": rng.choice(["inbound", "outbound", "partners"])},
                    "contact": {
                        "name": f"Lead {lead_id}",
                        "email": f"lead{lead_id}@example.com",
                        "company": f"Company {rng.randint(1, 3000)}",
                        "country": rng.choice(["ES", "PT", "FR", "MX", "AR", "CO"]),
                    },
                    "custom_fields": {"predictive_score": rng.randint(0, 100), "score_bucket": rng.choice("ABCD")},
                }
            )
        k += size
    return leads


def _epoch(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


class RecordedCrm(BaseHTTPRequestHandler):
    """The list endpoint over the leads of :func:`make_leads` (class attributes set by :func:`serve`)."""

    protocol_version = "HTTP/1.1"  # keep-alive: the client reuses its connection
    # Headers and body go out in two writes: with Nagle's algorithm on, the body of some page
    # sizes would wait for the client's delayed ACK (40 ms a page). Servers in front of CRMs
    # set TCP_NODELAY too.
    disable_nagle_algorithm = True
    keys: list[tuple[int, int]] = []
    bodies: list[bytes] = []
    token = ""
    requests = 0
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self._send(401, b'{"error": "invalid token"}')
            return
        if url.path == "/_stats":
            self._send(200, json.dumps({"requests": RecordedCrm.requests}).encode())
            return
        if url.path != LIST_PATH:
            self._send(404, b'{"error": "not found"}')
            return
        with self.lock:
            RecordedCrm.requests += 1
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        per_page = int(q.get("per_page", "100"))
        if "cursor" in q:
            since, until, after_t, after_id = map(int, base64.urlsafe_b64decode(q["cursor"]).decode().split(","))
            start = bisect.bisect_right(self.keys, (after_t, after_id))
        else:
            since, until = _epoch(q["updated_since"]), _epoch(q["updated_until"])
            start = bisect.bisect_left(self.keys, (since, -1))
        stop = bisect.bisect_right(self.keys, (until, sys.maxsize))
        end = min(start + per_page, stop)
        next_url = "null"
        if end < stop:
            cursor = base64.urlsafe_b64encode(f"{since},{until},{self.keys[end - 1][0]},{self.keys[end - 1][1]}".encode())
            next_url = f'"{LIST_PATH}?per_page={per_page}&cursor={cursor.decode()}"'
        head = b'{"data":[' + b",".join(self.bodies[start:end])
        self._send(200, head + f'],"meta":{{"count":{max(end - start, 0)},"next_url":{next_url}}}}}'.encode())


def describe(leads: list[dict[str, Any]], page_size: int) -> dict[str, Any]:
    """What the benchmark prints about the served leads: modification times, the most leads
    at one, page boundaries between two leads changed in the same second, outcomes, deleted,
    and the first modification time (epoch seconds)."""
    per_second = Counter(x["updated_at"] for x in leads)
    return {
        "times": len(per_second),
        "most": max(per_second.values()),
        "boundaries": (len(leads) - 1) // page_size,
        "inside": sum(1 for i in range(page_size, len(leads), page_size) if leads[i - 1]["updated_at"] == leads[i]["updated_at"]),
        "outcomes": Counter(STATUSES[x["status"]] for x in leads),
        "deleted": sum(x["deleted_at"] is not None for x in leads),
        "first": _epoch(leads[0]["updated_at"]),
    }


def serve(n: int, end: int, page_size: int) -> None:
    """The server process: prints its port and :func:`describe` (one JSON line), serves until
    its standard input closes. The benchmark's own process never holds the leads before its
    pulls, so its memory figures are the pull's."""
    leads = make_leads(n, end)
    RecordedCrm.keys = [(_epoch(x["updated_at"]), x["id"]) for x in leads]
    RecordedCrm.bodies = [json.dumps(x, separators=(",", ":")).encode() for x in leads]
    RecordedCrm.token = os.environ[TOKEN_ENV]
    server = ThreadingHTTPServer(("127.0.0.1", 0), RecordedCrm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"port": server.server_address[1], **describe(leads, page_size)}), flush=True)
    sys.stdin.read()  # the benchmark closes it when done (or dies)
    server.shutdown()


# -- the benchmark ------------------------------------------------------------------------------


def write_project(root: Path, url: str, page_size: int, overlap: int) -> Path:
    """A project in ``root`` (its inputs the checkout's, its products in ``root``) whose
    ``crm:`` section is the recorded CRM's; returns its configuration file."""
    import yaml

    conf = yaml.safe_load((ROOT / "01_Documentos" / "config.yaml").read_text(encoding="utf-8"))
    conf["paths"]["raw_data"] = str(ROOT / "02_Datos" / "01_Originales" / "Leads.csv")
    conf["paths"]["notebooks_dir"] = str(ROOT / "03_Notebooks")
    conf["paths"]["rules_table"] = str(ROOT / "01_Documentos" / "scoring_rules.csv")
    conf["crm"] = {
        "kind": "rest",
        "url": url,
        "token_env": TOKEN_ENV,
        "auth": "bearer",
        "page_size": page_size,
        "overlap_seconds": overlap,
        "unmapped": "fail",
        "status_map": STATUS_MAP,
        "rest": {
            "pull": {
                "url": LIST_PATH + "?updated_since={since}&updated_until={until}&per_page={page_size}",
                "paging": "next_url",
                "next_url_path": "meta.next_url",
                "items_path": "data",
            },
            "id_path": "id",
            "modified_path": "updated_at",
            "outcome_time_path": "closed_at",
            "deleted_path": "deleted_at",
            "status_paths": {"status": "status"},
        },
    }
    (root / "01_Documentos").mkdir(parents=True)
    path = root / "01_Documentos" / "config.yaml"
    path.write_text(yaml.safe_dump(conf, sort_keys=False), encoding="utf-8")
    return path


def max_rss_mb() -> float:
    """The process's max resident memory so far (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=TARGET_LEADS, help="leads changed in the window")
    parser.add_argument("--page-size", type=int, default=200, help="crm.page_size: leads per page")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    parser.add_argument("--dir", help="where the temporary folder goes (default: the system's)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the server process
    parser.add_argument("--end", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.leads, args.end, args.page_size)
        return
    if args.leads < 1 or args.page_size < 1:
        parser.error("--leads and --page-size must be at least 1")

    import httpx

    from leadscoring.config import load_config
    from leadscoring.crm.outcomes import latest_outcomes
    from leadscoring.crm.pull import pull_outcomes

    end = int(time.time()) - 600  # the last change, ten minutes ago
    os.environ[TOKEN_ENV] = secrets.token_hex(16)
    folder = Path(tempfile.mkdtemp(prefix="bench-crm-", dir=args.dir))
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--leads", str(args.leads), "--end", str(end), "--page-size", str(args.page_size)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    failed = False
    try:
        assert server.stdout is not None
        try:
            about = json.loads(server.stdout.readline())
        except ValueError:
            sys.exit("bench_crm: the recorded CRM server did not start (its error is above)")
        url = f"http://127.0.0.1:{about['port']}"
        overlap = end - about["first"] + 3600  # the second pull reads every lead again
        auth = {"Authorization": f"Bearer {os.environ[TOKEN_ENV]}"}

        def served() -> int:
            return int(httpx.get(f"{url}/_stats", headers=auth).json()["requests"])

        counts, deleted = about["outcomes"], about["deleted"]
        print(
            f"server: {args.leads:,} leads on {url} (rest, next_url paging, {args.page_size} per page;"
            f" {about['times']:,} modification times, up to {about['most']:,} leads at one,"
            f" {about['inside']} of {about['boundaries']} page boundaries between two leads of the same second;"
            f" converted {counts['converted']:,}, lost {counts['lost']:,}, open {counts['open']:,}, deleted {deleted:,})"
        )
        cfg = load_config(write_project(folder / "project", url, args.page_size, overlap))

        rss_before = max_rss_mb()
        t = time.perf_counter()
        first = pull_outcomes(cfg)
        first_s = time.perf_counter() - t
        rss_after = max_rss_mb()
        pages = served()
        print(
            f"first pull: {first.read:,} leads read ({first.deleted:,} deleted), {first.appended:,} rows appended"
            f" in {first_s:.2f} s: {first.read / first_s:,.0f} leads/s, {pages} requests"
        )

        t = time.perf_counter()
        second = pull_outcomes(cfg)
        second_s = time.perf_counter() - t
        print(
            f"second pull (same window, nothing changed): {second.read:,} leads read, {second.appended:,} rows appended"
            f" in {second_s:.2f} s: {second.read / second_s:,.0f} leads/s, {served() - pages} requests"
        )

        traced = load_config(write_project(folder / "traced", url, args.page_size, overlap))
        tracemalloc.start()
        t = time.perf_counter()
        third = pull_outcomes(traced)
        traced_s = time.perf_counter() - t
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"peak memory: max RSS {rss_after:,.0f} MB after the first pull ({rss_before:,.0f} MB before it:"
            f" +{rss_after - rss_before:,.0f} MB); tracemalloc peak {peak / 2**20:,.1f} MB of Python allocations"
            f" (the first pull again in a fresh project, traced: {third.read:,} leads in {traced_s:.2f} s)"
        )

        if args.leads == TARGET_LEADS:
            verdict = "met" if first_s <= TARGET_SECONDS else "NOT met"
            print(f"target ({TARGET_LEADS:,} leads in <= {TARGET_SECONDS:.0f} s): {verdict} ({first_s:.2f} s)")
        else:
            print(f"target ({TARGET_LEADS:,} leads in <= {TARGET_SECONDS:.0f} s): not checked (--leads {args.leads:,})")

        truth = {str(x["id"]): STATUSES[x["status"]] for x in make_leads(args.leads, end)}
        history = latest_outcomes(cfg.path("outcome_history"))
        got = dict(zip(history["lead_id"], history["outcome"], strict=True))
        right = got == truth and int(history["deleted"].sum()) == deleted
        failed = not right or first.read != args.leads or second.appended != 0 or second.read != args.leads
        print(
            f"history: {len(history):,} leads, {int(history['deleted'].sum()):,} deleted;"
            f" each lead once with the server's outcome: {'yes' if right else 'NO'}"
        )
    finally:
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if args.keep:
            print(f"kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
