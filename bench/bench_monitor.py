"""Monitoring benchmark (issue #24): ``leadscoring monitor`` over 1,000,000 scored leads and
50,000 outcomes in at most 60 s, with its peak memory.

A temporary project on the shipped export: a scoring model (XGBoost, sigmoid-calibrated, 60
trees) trained on a stratified 80 % (its working split, ``work.parquet``: the training
reference of the drift) with its validation ROC-AUC in its manifest. Its score history holds
``--leads`` leads (default 1,000,000) scored once each over 26 weeks, one part per day (182
nightly jobs), each row with the lead's inputs as scored (a JSON object of the configured
columns, drawn from the export's leads) and an experiment group (10 % control). Its outcome
history holds ``--outcomes`` rows (default 50,000): converted and lost leads among the older
ones, a tenth of them with an earlier ``open`` row, and outcomes for a few leads never scored.
From week 20 one numeric input is multiplied by 4 (a drift to find).

Then what ``leadscoring monitor --now ...`` does runs in a child process, through the
command's own functions (``build_monitoring`` and ``write_monitoring``: imports, DuckDB over
the parquet parts, the outcome history, the model scoring the reference, the figures, the HTML
and JSON; not the sending of its alerts, which needs a webhook), timed by part, and prints:

- ``setup``: what was generated, and how long it took (not the benchmark);
- ``monitor``: the command's wall time, cohorts and alerts;
- ``peak memory``: the child's max RSS (``resource.getrusage(RUSAGE_CHILDREN)``), the whole
  process (Python, pandas, DuckDB, matplotlib) at its highest;
- ``target``: whether 1,000,000 leads and 50,000 outcomes took at most 60 s.

Usage: ``nice .venv/bin/python bench/bench_monitor.py [--leads 1000000] [--outcomes 50000]
[--keep] [--dir DIR]``. Nothing is written into the checkout (the project lives in a temporary
folder, removed unless ``--keep``). Exit code 1 when the command fails or its report misses the
planted drift; the time target is reported, not enforced.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "01_Documentos" / "config.yaml"
RAW = ROOT / "02_Datos" / "01_Originales" / "Leads.csv"
TARGET_LEADS, TARGET_OUTCOMES, TARGET_SECONDS = 1_000_000, 50_000, 60.0
START = pd.Timestamp("2025-01-06", tz="UTC")  # a Monday
DAYS, DRIFT_WEEK = 26 * 7, 20
NOW = START + pd.Timedelta(days=DAYS)


#: The child process: what ``leadscoring monitor --now`` does, timed by part (imports of the
#: package and its libraries, building the report, writing the page and the JSON).
CHILD = """
import json, sys, time
t0 = time.perf_counter()
from leadscoring.config import load_config
from leadscoring.loop.monitoring import build_monitoring, write_monitoring
import matplotlib.pyplot
t1 = time.perf_counter()
cfg = load_config(sys.argv[1])
report = build_monitoring(cfg, now=sys.argv[2])
t2 = time.perf_counter()
write_monitoring(cfg, report=report)
t3 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "build": t2 - t1, "write": t3 - t2, "report": t3 - t1}))
"""


def make_project(folder: Path) -> Path:
    conf = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    conf["paths"]["raw_data"] = str(RAW)
    conf["paths"]["notebooks_dir"] = str(ROOT / "03_Notebooks")
    conf["paths"]["rules_table"] = str(ROOT / "01_Documentos" / "scoring_rules.csv")
    conf["monitoring"] = {"cohort": "week", "maturity_days": 60}
    (folder / "01_Documentos").mkdir(parents=True)
    path = folder / "01_Documentos" / "config.yaml"
    path.write_text(yaml.safe_dump(conf, sort_keys=False), encoding="utf-8")
    return path


def train(cfg) -> tuple[object, pd.DataFrame]:
    """A small calibrated model on 80 % of the export, saved as the project's scoring model."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    from leadscoring.artifacts import SCORE_MODEL, save_model
    from leadscoring.ingest.load import read_leads
    from leadscoring.io import write_parquet
    from leadscoring.training.compare import calibrated
    from leadscoring.training.evaluation import classification_metrics
    from leadscoring.training.pipeline import build_pipeline, xgb_classifier

    target = cfg.data.target_column
    leads = read_leads(RAW, cfg)
    work, valid = train_test_split(leads, test_size=0.2, stratify=leads[target], random_state=0)
    base = build_pipeline(cfg, xgb_classifier(0, n_estimators=60), scale=False)
    model = calibrated(base, "sigmoid", StratifiedKFold(3, shuffle=True, random_state=0))
    model.fit(work.drop(columns=[target]), work[target])
    val = classification_metrics(valid[target], model.predict_proba(valid.drop(columns=[target]))[:, 1])
    save_model(model, cfg.path("models_dir") / SCORE_MODEL, kind="lead_scoring_model", validation=val)
    write_parquet(work.reset_index(drop=True), cfg.path("work_dir") / "work.parquet")
    return model, leads


def _inputs(rows: pd.DataFrame, columns: list[str]) -> np.ndarray:
    def value(v: object) -> object:
        return None if v is None or (isinstance(v, float) and np.isnan(v)) else v

    records = rows[columns].astype(object).to_dict(orient="records")
    return np.array([json.dumps({k: value(v) for k, v in r.items()}, sort_keys=True) for r in records], dtype=object)


def generate(cfg, model, leads: pd.DataFrame, n_leads: int, n_outcomes: int, seed: int = 0) -> dict[str, int]:
    """The score history (one part per day) and the outcome history (see the module)."""
    from leadscoring.crm.outcomes import HISTORY_COLUMNS, iso, status_text
    from leadscoring.serving.history import history_folder
    from leadscoring.serving.scorer import to_score

    rng = np.random.default_rng(seed)
    target = cfg.data.target_column
    columns = [c for c in cfg.model_data.columns.all if c not in cfg.event_columns]
    drifted = leads.copy()
    first_numeric = cfg.data.columns.numeric[0]
    drifted[first_numeric] = drifted[first_numeric] * 4
    # Each lead is one of the export's leads (its inputs as JSON and its score computed once per
    # export lead, then indexed): the history costs the time of writing it, not of a million models.
    kinds = []
    for frame in (leads, drifted):
        kinds.append((_inputs(frame, columns), to_score(model.predict_proba(frame.drop(columns=[target]))[:, 1])))
    day = np.sort(rng.integers(0, DAYS, n_leads))
    pick = rng.integers(0, len(leads), n_leads)
    late = day >= (DRIFT_WEEK - 1) * 7
    scored_at = START + pd.to_timedelta(day, unit="D") + pd.to_timedelta(rng.integers(0, 86400, n_leads), unit="s")
    group = np.where(rng.random(n_leads) < 0.1, "control", "treatment")
    folder = history_folder(cfg.path("score_history"))
    folder.mkdir(parents=True, exist_ok=True)
    bounds = np.searchsorted(day, np.arange(DAYS + 1))
    for d in range(DAYS):
        lo, hi = bounds[d], bounds[d + 1]
        if lo == hi:
            continue
        inputs, scores = kinds[1] if late[lo] else kinds[0]
        idx = pick[lo:hi]
        name = f"part-{int(scored_at[lo].value):020d}-{uuid.uuid4().hex[:16]}-{uuid.uuid4().hex[:8]}.parquet"
        pq.write_table(
            pa.table(
                {
                    "lead_id": pa.array([f"L{i:07d}" for i in range(lo, hi)], pa.string()),
                    "score": pa.array(scores[idx].astype("int16")),
                    "model_version": pa.array(["0123456789ab"] * (hi - lo), pa.string()),
                    "scored_at": pa.array(scored_at[lo:hi]).cast(pa.timestamp("us", tz="UTC")),
                    "job_id": pa.array([f"night-{d}"] * (hi - lo), pa.string()),
                    "experiment_group": pa.array(group[lo:hi], pa.string()),
                    "inputs": pa.array(inputs[idx], pa.string()),
                }
            ),
            folder / name,
        )
    # Outcomes: leads scored at least a week before NOW, closed 1 to 40 days after their scoring.
    older = np.flatnonzero(scored_at <= NOW - pd.Timedelta(days=7))
    opened = n_outcomes // 11
    closed = n_outcomes - opened - 10
    chosen = np.sort(rng.choice(older, size=closed, replace=False))
    score = np.where(late, kinds[1][1][pick], kinds[0][1][pick])
    converts = rng.random(closed) < score[chosen] / 100
    closed_at = scored_at[chosen] + pd.to_timedelta(rng.integers(86400, 40 * 86400, closed), unit="s")
    rows = [
        [
            f"L{i:07d}",
            "converted" if c else "lost",
            iso(t.to_pydatetime()),
            iso(t.to_pydatetime()),
            "false",
            status_text({"s": "x"}),
        ]
        for i, c, t in zip(chosen, converts, closed_at, strict=True)
    ]
    for i in chosen[:opened]:  # an earlier "open" row
        t = scored_at[i].to_pydatetime()
        rows.append([f"L{i:07d}", "open", iso(t), "", "false", status_text({"s": "new"})])
    for k in range(10):
        rows.append([f"ghost-{k}", "lost", iso(START.to_pydatetime()), "", "false", status_text({"s": "x"})])
    frame = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    frame.to_csv(cfg.path("outcome_history"), index=False)
    return {"leads": n_leads, "parts": int((np.diff(bounds) > 0).sum()), "outcomes": len(frame)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=TARGET_LEADS, help="scored leads in the score history")
    parser.add_argument("--outcomes", type=int, default=TARGET_OUTCOMES, help="rows in the outcome history")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project (its monitoring.html)")
    parser.add_argument("--dir", help="folder for the temporary project")
    args = parser.parse_args()
    from leadscoring.config import load_config

    folder = Path(tempfile.mkdtemp(prefix="bench-monitor-", dir=args.dir))
    try:
        t = time.perf_counter()
        config = make_project(folder)
        cfg = load_config(config)
        model, leads = train(cfg)
        made = generate(cfg, model, leads, args.leads, args.outcomes)
        history_mb = sum(p.stat().st_size for p in cfg.path("score_history").glob("*.parquet")) / 2**20
        print(
            f"setup: {made['leads']:,} scored leads in {made['parts']} daily parts ({history_mb:,.0f} MB, with inputs), "
            f"{made['outcomes']:,} outcome rows, in {time.perf_counter() - t:.1f} s"
        )
        t = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(config), NOW.isoformat()], capture_output=True, text=True, timeout=3600
        )
        seconds = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
        if done.returncode != 0:
            print(f"monitor: failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
            return 1
        timings = json.loads(done.stdout.strip().splitlines()[-1])
        data = json.loads((cfg.path("results_dir") / "monitoring.json").read_text(encoding="utf-8"))
        print(
            f"monitor: {len(data['cohorts'])} cohorts, {len(data['alerts'])} alert(s), {len(data['notes'])} note(s) in "
            f"{seconds:.1f} s: imports {timings['imports']:.1f} s, report {timings['report']:.1f} s "
            f"(building {timings['build']:.1f} s, page and JSON {timings['write']:.1f} s)"
        )
        print(f"peak memory: max RSS {peak:,.0f} MB (the monitor command's process)")
        full = args.leads >= TARGET_LEADS and args.outcomes >= TARGET_OUTCOMES
        verdict = (
            ("met" if seconds <= TARGET_SECONDS else f"NOT met ({seconds:.1f} s)")
            if full
            else f"not checked (--leads {args.leads:,})"
        )
        print(f"target ({TARGET_LEADS:,} leads and {TARGET_OUTCOMES:,} outcomes in <= {TARGET_SECONDS:.0f} s): {verdict}")
        drift = [a for a in data["alerts"] if a["kind"] == "drift" and a["variable"] == cfg.data.columns.numeric[0]]
        found = bool(drift) and drift[0]["cohorts"][0] == (START + pd.Timedelta(weeks=DRIFT_WEEK - 1)).strftime("%Y-%m-%d")
        print(f"drift planted from week {DRIFT_WEEK} found: {'yes' if found else 'no'}")
        if args.keep:
            print(f"project kept in {folder}")
        return 0 if found else 1
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
