"""``bench/bench_crm.py`` runs end to end on a small window: a real loopback server, the real
pull twice, the figures printed and the outcome history right. Nothing here checks a time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from leadscoring.config import load_config
from leadscoring.crm.outcomes import OUTCOMES, latest_outcomes
from leadscoring.crm.pull import WATERMARK_FILE

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_crm.py"


def test_bench_crm_pulls_500_leads_from_a_loopback_server_and_reports(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, str(BENCH), "--leads", "500", "--page-size", "40", "--keep", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,  # a guard against a hung server, not a measurement
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()

    def line(start: str) -> str:
        found = [x for x in lines if x.startswith(start)]
        assert len(found) == 1, (start, done.stdout)
        return found[0]

    assert "500 leads on http://127.0.0.1:" in line("server: ")
    assert line("first pull: ").startswith("first pull: 500 leads read (")
    assert ", 500 rows appended in " in line("first pull: ") and "leads/s, 13 requests" in line("first pull: ")
    second = line("second pull (same window, nothing changed): ")
    assert "500 leads read, 0 rows appended in " in second and "leads/s" in second
    memory = line("peak memory: ")
    assert "max RSS " in memory and "tracemalloc peak " in memory
    assert line("target (10,000 leads in <= 30 s): ").endswith("not checked (--leads 500)")
    assert line("history: ").endswith("each lead once with the server's outcome: yes")

    kept = Path(line("kept: ").removeprefix("kept: "))
    assert kept.parent == tmp_path
    cfg = load_config(kept / "project" / "01_Documentos" / "config.yaml")
    history = latest_outcomes(cfg.path("outcome_history"))
    assert len(history) == 500 and history["lead_id"].is_unique
    assert set(history["outcome"]) == set(OUTCOMES) and history["deleted"].any()
    assert (cfg.path("crm_state") / WATERMARK_FILE).is_file()
