"""Cluster scoring against the local engine, in the same run: wall time and the CLIENT's peak
memory (the workers run in their own processes, started here as a real cluster would be:
`dask scheduler` and `dask worker`, not children of the client).

Generates N leads from the shipped export (new ids) split into files, then measures
`leadscoring score` with the local engine on one file and with `--engine dask --scheduler`
on the files, on a cluster of 2 single-threaded workers. Reasons are left out (as in
bench_batch.py at 1M leads: TreeSHAP dominates and is the same on both). Needs the models
of a production run (`make run`); never touches the project's score history.

    .venv/bin/python bench/bench_cluster.py [--leads 1000000] [--files 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batch import LEADSCORING, ROOT, make_leads, measure  # noqa: E402

DASK = [sys.executable, "-m", "distributed.cli"]


def start_cluster(folder: Path, workers: int) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """A scheduler and ``workers`` single-threaded worker processes, each in its own folder."""
    info = folder / "scheduler.json"
    procs = [
        subprocess.Popen(
            [
                *DASK[:2],
                "distributed.cli.dask_scheduler",
                "--scheduler-file",
                str(info),
                "--port",
                "0",
                "--dashboard-address",
                ":0",
            ],
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    deadline = time.monotonic() + 60
    while not info.is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    address = json.loads(info.read_text())["address"]
    for i in range(workers):
        wdir = folder / f"worker{i}"
        wdir.mkdir()
        procs.append(
            subprocess.Popen(
                [
                    *DASK[:2],
                    "distributed.cli.dask_worker",
                    address,
                    "--nthreads",
                    "1",
                    "--memory-limit",
                    "0",
                    "--dashboard-address",
                    ":0",
                ],
                cwd=wdir,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    time.sleep(5)  # workers register
    return address, procs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if not (ROOT / "04_Modelos" / "lead_scoring_model.pkl").is_file():
        sys.exit("no model: run `make run` first")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        whole = tmp / "leads.csv"
        make_leads(args.leads, whole)
        parts = tmp / "parts"
        parts.mkdir()
        for i, chunk in enumerate(
            pd.read_csv(whole, sep=";", dtype=str, keep_default_na=False, chunksize=-(-args.leads // args.files))
        ):
            chunk.to_csv(parts / f"leads_{i:03d}.csv", sep=";", index=False)
        wall, peak = measure(
            [
                *LEADSCORING,
                "score",
                "--input",
                str(whole),
                "--output",
                str(tmp / "local.csv"),
                "--no-reasons",
                "--no-history",
                "--no-progress",
                "--jobs",
                "1",
            ]
        )
        rows.append(("local engine (1 process)", wall, peak))
        address, procs = start_cluster(tmp, args.workers)
        try:
            wall, peak = measure(
                [
                    *LEADSCORING,
                    "score",
                    "--engine",
                    "dask",
                    "--scheduler",
                    address,
                    "--input",
                    str(parts / "leads_*.csv"),
                    "--output",
                    str(tmp / "dask_out"),
                    "--no-reasons",
                    "--no-history",
                ]
            )
            rows.append((f"dask, {args.workers} single-threaded workers", wall, peak))
        finally:
            for p in procs[::-1]:
                p.terminate()
                p.wait(timeout=30)
    print(f"{args.leads:,} leads in {args.files} files, 2 cores ({os.cpu_count()} reported)")
    print(f"{'engine':<36} {'seconds':>8} {'leads/s':>9} {'client peak MB':>15}")
    for label, wall, peak in rows:
        print(f"{label:<36} {wall:>8.1f} {args.leads / wall:>9,.0f} {peak:>15.0f}")


if __name__ == "__main__":
    main()
