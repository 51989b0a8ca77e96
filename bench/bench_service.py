"""Latency of the scoring service: single-lead POST /score over HTTP on loopback.

Starts `leadscoring serve` (uvicorn, 1 worker) in its own process on 127.0.0.1 (a free
port), sends sequential requests over one keep-alive connection from this process
(real leads of the shipped export, each sent once per round) and prints p50 / p95 / p99
of the round trip, the server's own time per lead (its ``Server-Timing`` header), the
throughput, and GET /health as the floor of the HTTP stack. The client is the standard
library's ``http.client``: a heavier client (httpx, requests) adds its own 0.5-1 ms per
request to what is measured. Needs the models of a production run (`make run`).

    .venv/bin/python bench/bench_service.py [--requests 300] [--rounds 3] [--compare-with CHECKOUT]
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batch import checkout_python  # noqa: E402

from leadscoring.config import load_config
from leadscoring.ingest.load import read_leads


class Client:
    """One keep-alive HTTP/1.1 connection; returns (status, body, Server-Timing ms)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, float | None]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        timing = resp.getheader("Server-Timing")
        return resp.status, data, float(timing.split("dur=")[1]) if timing and "dur=" in timing else None


def wait_ready(port: int, server: subprocess.Popen[bytes], seconds: float = 60.0) -> Client:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with code {server.returncode} before answering")
        try:
            client = Client(port)
            if client.call("GET", "/health")[0] == 200:
                return client
        except OSError:
            time.sleep(0.1)
    sys.exit(f"the server did not answer /health within {seconds:.0f} s")


def measure(cfg_path: str, bodies: list[bytes], rounds: int, command: list[str]) -> dict[str, float]:
    """Start a server (``command``: this package's CLI, or another checkout's), warm it up,
    time the calls."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [*command, *([] if "--config" in command else ["--config", cfg_path]), "serve", "--port", str(port)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = wait_ready(port, server)
        for body in bodies[:20]:  # warm-up
            assert client.call("POST", "/score", body)[0] == 200
        health = [0.0] * len(bodies)
        for i in range(len(bodies)):
            t0 = time.perf_counter()
            client.call("GET", "/health")
            health[i] = (time.perf_counter() - t0) * 1000
        times, server_ms = [], []
        t_all = time.perf_counter()
        for _ in range(rounds):
            for body in bodies:
                t0 = time.perf_counter()
                status, data, dur = client.call("POST", "/score", body)
                times.append((time.perf_counter() - t0) * 1000)
                if status != 200:
                    sys.exit(f"POST /score answered {status}: {data[:200]!r}")
                if dur is not None:
                    server_ms.append(dur)
        wall = time.perf_counter() - t_all
    finally:
        server.terminate()
        server.wait(timeout=10)
    p50, p95, p99 = np.percentile(times, [50, 95, 99])
    out = {"p50": p50, "p95": p95, "p99": p99, "rps": len(times) / wall, "n": len(times)}
    out["h50"], out["h95"] = np.percentile(health, [50, 95])
    if server_ms:
        out["s50"], out["s95"] = np.percentile(server_ms, [50, 95])
    return out


def report(title: str, m: dict[str, float], leads: int, rounds: int) -> None:
    print(f"{title}POST /score: {m['n']} sequential single-lead requests ({rounds} x {leads} leads), loopback, 1 worker")
    print(f"  round trip  p50 {m['p50']:.2f} ms   p95 {m['p95']:.2f} ms   p99 {m['p99']:.2f} ms   throughput {m['rps']:.0f} req/s")
    if "s50" in m:
        print(f"  scoring inside the server (Server-Timing)  p50 {m['s50']:.2f} ms   p95 {m['s95']:.2f} ms")
    print(f"  GET /health (HTTP stack alone): p50 {m['h50']:.2f} ms   p95 {m['h95']:.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300, help="leads per round (default 300)")
    ap.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3); figures pool them")
    ap.add_argument("--config")
    ap.add_argument("--repeat", type=int, default=1, help="servers started per version, alternating (default 1)")
    ap.add_argument(
        "--compare-with",
        type=Path,
        metavar="CHECKOUT",
        help="also measure a server running the package of another checkout (e.g. a `git worktree` "
        "of an earlier commit), one after the other in the same run, same models",
    )
    args = ap.parse_args()
    cfg = load_config(args.config)
    leads = read_leads(cfg.path("raw_data"), cfg, require_target=False).head(args.requests)
    bodies = [json.dumps({k: (None if pd.isna(v) else v) for k, v in r.items()}).encode() for r in leads.to_dict("records")]
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"": [sys.executable, "-m", "leadscoring.cli"]}
        if args.compare_with:
            runs["[before] "] = checkout_python(args.compare_with, Path(tmp))
        repeats = [
            {tag: measure(str(cfg.source), bodies, args.rounds, cmd) for tag, cmd in runs.items()} for _ in range(args.repeat)
        ]  # alternating: a busy host hits both alike
    for tag in runs:
        report(tag, repeats[-1][tag], len(bodies), args.rounds)
    if args.compare_with:
        now = [r[""]["p50"] for r in repeats]
        before = [r["[before] "]["p50"] for r in repeats]
        print(
            "p50 round trip per repeat, now / before (ms): "
            + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(now, before, strict=True))
        )
        print(
            f"median p50 round trip: {np.median(now):.2f} ms now vs {np.median(before):.2f} ms before "
            f"({100 * (np.median(now) / np.median(before) - 1):+.1f} %)"
        )
    print("  target: p50 <= 5 ms, p95 <= 15 ms")


if __name__ == "__main__":
    main()
