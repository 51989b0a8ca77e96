"""Score history benchmark: the time to append one scoring job to a large history, and to
read the previous scores of a batch of leads.

Builds a history of ``--rows`` rows (default 10,000,000: ten nightly scorings of 1,000,000
leads, compacted into one file) in a temporary folder, each row with its lead's input as
scored (a JSON object of 19 columns, as in the shipped export, about 350 bytes; ``--no-inputs``:
none, as histories were before inputs were kept), then prints:

- ``append``: appending ``--append`` scores (default 10,000) as a new job (target < 1 s,
  whatever the history's size: an append reads nothing of the history);
- ``lookup cold``: a new reader's first look-up of the previous scores of ``--append`` leads
  (reads the whole history once, as the service does when it starts);
- ``lookup after append``: the same reader's look-up after another job was appended (only the
  new part is read);
- ``lookup warm``: the same look-up with nothing new;
- ``inputs of N leads``: the inputs of the last scoring of ``--append // 2`` leads, read as a
  retrain reads them (the scorings located, then only the picked ones' row groups read);
- the history's size on disk and the process's peak memory.

Usage: ``nice .venv/bin/python bench/bench_history.py [--rows N] [--append N] [--dir DIR]``.
Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from leadscoring.serving.history import ScoreHistory, append_scores, compact, inputs_at, locate_scorings, read_history
from leadscoring.serving.inputs import inputs_json

T0 = datetime(2025, 1, 1, 2, 0, tzinfo=UTC)


def _ids(start: int, n: int) -> np.ndarray:
    return np.array([f"L{i:09d}" for i in range(start, start + n)], dtype=object)


def _inputs(n: int, rng: np.random.Generator) -> pa.Array:
    """``n`` leads' inputs like the shipped export's: 5 numbers, 5 categories, 9 yes/no, as text."""
    words = np.array(["Google", "Direct Traffic", "Olark Chat", "Organic Search", "Reference", "Welingak Website", "Select"])
    columns: dict[str, np.ndarray] = {}
    for i in range(5):
        columns[f"number_{i}"] = rng.integers(0, 2000, n).astype(str).astype(object)
    for i in range(5):
        columns[f"category_{i}"] = words[rng.integers(0, len(words), n)].astype(object)
    for i in range(9):
        columns[f"yes_no_{i}"] = np.array(["Yes", "No", ""], dtype=object)[rng.integers(0, 3, n)]
    return inputs_json(columns, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows in the history before the timed append")
    parser.add_argument("--append", type=int, default=10_000, help="scores appended, and leads looked up")
    parser.add_argument("--dir", help="folder for the history (default: a temporary one, removed afterwards)")
    parser.add_argument("--no-inputs", action="store_true", help="append scores without inputs (histories before #23)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-history-", dir=args.dir) as tmp:
        path = Path(tmp) / "score_history"
        leads = min(args.rows, 1_000_000)
        ids = _ids(0, leads)
        rng = np.random.default_rng(0)
        recorded = None if args.no_inputs else _inputs(leads, rng)

        def inputs(n: int) -> pa.Array | None:  # a different lead's input each time
            return None if recorded is None else recorded.take(rng.integers(0, len(recorded), n))

        t = time.perf_counter()
        done, day = 0, 0
        while done < args.rows:
            n = min(leads, args.rows - done)
            append_scores(path, ids[:n], rng.integers(0, 101, n), "m1", T0 + timedelta(days=day), inputs=inputs(n))
            done, day = done + n, day + 1
        compaction = compact(path)
        print(
            f"setup: {done:,} rows in {day} jobs, compacted into 1 file ({compaction.rows:,} rows)"
            f" in {time.perf_counter() - t:.1f} s (peak memory so far {_peak_mb():,.0f} MB)"
        )

        times = []
        for k in range(5):
            new = _ids(leads + k * args.append, args.append // 2)  # half new leads, half already scored
            batch = np.concatenate([new, ids[: args.append - len(new)]])
            appended = inputs(len(batch))
            t = time.perf_counter()
            append_scores(path, batch, rng.integers(0, 101, len(batch)), "m2", T0 + timedelta(days=day + k), inputs=appended)
            times.append(time.perf_counter() - t)
        print(
            f"append {args.append:,} scores to {done:,} rows: median {statistics.median(times):.3f} s"
            f" (5 jobs: {' '.join(f'{x:.3f}' for x in times)})"
        )

        wanted = ids[rng.choice(leads, size=min(args.append, leads), replace=False)]
        reader = ScoreHistory(path)
        t = time.perf_counter()
        previous = reader.lookup(wanted)
        print(
            f"lookup cold ({len(wanted):,} leads, whole history read): {time.perf_counter() - t:.2f} s;"
            f" {int(np.isnan(previous).sum())} new"
        )
        append_scores(
            path, wanted, rng.integers(0, 101, len(wanted)), "m2", T0 + timedelta(days=day + 10), inputs=inputs(len(wanted))
        )
        t = time.perf_counter()
        reader.lookup(wanted)
        print(f"lookup after append (one new part merged): {time.perf_counter() - t:.3f} s")
        t = time.perf_counter()
        for _ in range(100):
            reader.lookup(wanted)
        print(f"lookup warm: {(time.perf_counter() - t) / 100 * 1000:.1f} ms per look-up of {len(wanted):,} leads")
        t = time.perf_counter()
        for _ in range(1000):
            reader.lookup(wanted[:1])
        print(
            f"lookup warm, one lead (a service request): {(time.perf_counter() - t) / 1000 * 1e6:.0f} µs (folder listed each time)"
        )
        some = wanted[: max(1, len(wanted) // 2)]
        t = time.perf_counter()
        located = locate_scorings(path, some.tolist())  # as a retrain does: locate, pick, read those inputs
        picked = located.rows.sort_values("scored_at", kind="stable").drop_duplicates("lead_id", keep="last")
        texts = inputs_at(located, picked)
        print(
            f"inputs of {len(some):,} leads (their last scoring, as a retrain reads them): {time.perf_counter() - t:.2f} s"
            f" ({len(located.rows):,} scorings located, {sum(x is None for x in texts):,} without inputs)"
        )
        size = sum(p.stat().st_size for p in path.iterdir())
        rows = read_history(path, ["lead_id"]).num_rows
        print(f"history now: {rows:,} rows in {len(list(path.iterdir()))} files, {size / 1e6:,.0f} MB")
        print(f"peak memory (max RSS) of this process: {_peak_mb():,.0f} MB")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


if __name__ == "__main__":
    main()
