"""``bench/bench_monitor.py`` runs end to end on a small history: a model trained, the score
and outcome histories generated, the real monitoring in a child process, the figures printed
and the planted drift found. Nothing here checks a time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_monitor.py"


@pytest.mark.slow
def test_bench_monitor_runs_on_20000_leads_and_reports(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, str(BENCH), "--leads", "20000", "--outcomes", "2000", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,  # a guard against a hang, not a measurement
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()

    def line(start: str) -> str:
        found = [x for x in lines if x.startswith(start)]
        assert len(found) == 1, (start, done.stdout)
        return found[0]

    assert line("setup: ").startswith("setup: 20,000 scored leads in 182 daily parts")
    assert "2,000 outcome rows" in line("setup: ")
    assert line("monitor: ").startswith("monitor: 26 cohorts, ") and "imports " in line("monitor: ")
    assert "max RSS " in line("peak memory: ")
    assert line("target (1,000,000 leads and 50,000 outcomes in <= 60 s): ").endswith("not checked (--leads 20,000)")
    assert line("drift planted from week 20 found: ") == "drift planted from week 20 found: yes"
    assert not list(tmp_path.iterdir())  # the temporary project is removed
