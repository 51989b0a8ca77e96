"""``bench/bench_cycle.py`` runs end to end on a small project: a loopback CRM, night 1 and both
night-2 variants as ``leadscoring cycle`` processes, the figures printed. Nothing here checks a
time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_cycle.py"


@pytest.mark.slow
def test_bench_cycle_runs_two_nights_and_reports(tmp_path: Path):
    argv = [sys.executable, str(BENCH), "--open", "300", "--outcomes", "120", "--changed", "10"]
    argv += ["--models", str(tmp_path / "none"), "--dir", str(tmp_path)]  # no models there: a small one is trained
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1200)  # a guard, not a measurement
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "a small model trained" in out and "leads: 420 in the CRM and the export" in out
    assert "night 1 (every lead new): exit 0" in out and "sent 420, skipped 0" in out
    promoted = out[out.index("night 2, promoted") : out.index("night 2, kept")]
    assert "challenger promoted" in promoted and "rescored 300 of 300 open lead(s)" in promoted
    kept = out[out.index("night 2, kept") :]
    assert "champion kept" in kept and "rescored 10 of 300 open lead(s)" in kept
    assert "night 2, promoted: " in out and "peak RSS" in out and "(target 300 s: " in out
    assert out.rstrip().endswith("outcomes pulled and every night done: yes")
