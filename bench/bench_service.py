"""Latency of the scoring service: single-lead POST /score over HTTP on loopback.

Starts `leadscoring serve` (uvicorn, 1 worker) in its own process on 127.0.0.1 (a free
port), sends a bounded number of sequential requests from this process (real leads of
the shipped export) and prints p50 / p95 / p99, throughput, and the same for GET /health
as the floor of the HTTP stack. Needs the models of a production run (`make run`).

    .venv/bin/python bench/bench_service.py [--requests 300]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pandas as pd

from leadscoring.config import load_config
from leadscoring.data import read_leads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--config")
    args = ap.parse_args()
    cfg = load_config(args.config)
    leads = read_leads(cfg.path("raw_data"), cfg, require_target=False).head(args.requests)
    bodies = [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in leads.to_dict("records")]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "leadscoring.cli", "--config", str(cfg.source), "serve", "--port", str(port)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client() as client:
            for _ in range(300):  # up to 30 s to load the model and start
                try:
                    client.get(f"{base}/health").raise_for_status()
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            for body in bodies[:20]:  # warm-up
                client.post(f"{base}/score", json=body).raise_for_status()
            health = []
            for _ in range(len(bodies)):
                t0 = time.perf_counter()
                client.get(f"{base}/health").raise_for_status()
                health.append((time.perf_counter() - t0) * 1000)
            times = []
            t_all = time.perf_counter()
            for body in bodies:
                t0 = time.perf_counter()
                client.post(f"{base}/score", json=body).raise_for_status()
                times.append((time.perf_counter() - t0) * 1000)
            wall = time.perf_counter() - t_all
    finally:
        server.terminate()
        server.wait(timeout=10)
    p50, p95, p99 = np.percentile(times, [50, 95, 99])
    h50, h95 = np.percentile(health, [50, 95])
    print(f"POST /score, {len(times)} sequential single-lead requests on loopback (1 worker)")
    print(f"  p50 {p50:.1f} ms   p95 {p95:.1f} ms   p99 {p99:.1f} ms   throughput {len(times) / wall:.0f} req/s")
    print(f"GET /health (HTTP stack alone): p50 {h50:.1f} ms   p95 {h95:.1f} ms")
    print("  target: p50 <= 5 ms, p95 <= 15 ms")


if __name__ == "__main__":
    main()
