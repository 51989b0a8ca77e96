"""Latency of the scoring service: single-lead POST /score over HTTP on loopback.

Starts the real app with uvicorn on 127.0.0.1 (a free port), sends a bounded number of
requests from this process and prints p50 / p95 / p99 and throughput. Needs the models
of a production run (`make run`).

    .venv/bin/python bench/bench_service.py [--requests 300]
"""

from __future__ import annotations

import argparse
import socket
import threading
import time

import httpx
import numpy as np
import pandas as pd
import uvicorn

from leadscoring.config import load_config
from leadscoring.data import read_leads
from leadscoring.service import create_app


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
    server = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/score"
    with httpx.Client() as client:
        for body in bodies[:20]:  # warm-up
            client.post(url, json=body).raise_for_status()
        times = []
        t_all = time.perf_counter()
        for body in bodies:
            t0 = time.perf_counter()
            client.post(url, json=body).raise_for_status()
            times.append((time.perf_counter() - t0) * 1000)
        wall = time.perf_counter() - t_all
    server.should_exit = True
    thread.join(timeout=5)
    p50, p95, p99 = np.percentile(times, [50, 95, 99])
    print(f"POST /score, {len(times)} single-lead requests on loopback (1 worker)")
    print(f"  p50 {p50:.1f} ms   p95 {p95:.1f} ms   p99 {p99:.1f} ms   throughput {len(times) / wall:.0f} req/s")
    print("  target: p50 <= 5 ms, p95 <= 15 ms")


if __name__ == "__main__":
    main()
