"""Nightly cycle benchmark (issue #23): a cycle over 100,000 open leads and 5,000 new outcomes in
at most 5 minutes on 2 cores, with its peak memory.

A temporary project (the shipped configuration; the scores go to custom fields without
``scored_at``, so a push sends only changed scores) talks to a recorded home-grown CRM on
loopback (``tests/loop_crm.py``: a real HTTP server, keyset-paged list, ``PATCH`` per lead),
served by this process while the cycle runs as ``leadscoring cycle`` in a child process, so the
time is the command's own and the peak memory (``wait4``'s max RSS) the cycle's alone.

- **Leads** (generated, seeded): ``--open`` + ``--outcomes`` leads (default 100,000 + 5,000),
  rows of the shipped export drawn with replacement, numeric fields jittered (±20 %), new ids.
- **Night 1** (set-up, timed too): every lead is new: the pull reads them all, every lead is
  scored and pushed.
- **Night 2** (the benchmark): the sales team closed ``--outcomes`` leads (won or lost as the
  shipped row they were drawn from), and ``--changed`` open leads (default 2,000) have new
  inputs in the export, which holds the open leads only (the closed ones train on the inputs
  night 1 recorded). The cycle pulls the outcomes, retrains (due: 5,000 new outcomes),
  decides, rescores and pushes. Each variant of ``--nights`` starts from the same night 1:
  ``promoted`` (tolerance 1: the challenger is promoted, every open lead is rescored with the
  new models and every one whose score changed is pushed, the heaviest night), ``kept``
  (tolerance -1: only the leads with new inputs are rescored), ``rule`` (the configuration's
  0.005).
- **Models**: ``--models DIR`` (default: the checkout's ``04_Modelos`` from ``make run``, the
  real recipe, which a retraining refits); without one, a small model (60 trees on 800 leads)
  is trained first, and the output says so.

Printed: per night, each step's seconds (from the run log) and what it did, the total, the
child's peak RSS, and whether night 2 took at most 5 minutes. Usage:
``nice .venv/bin/python bench/bench_cycle.py [--open 100000] [--outcomes 5000] [--changed 2000]
[--nights promoted kept] [--models DIR] [--keep] [--dir DIR]``. Nothing is written into the checkout.
Exit code 1 when a night's cycle fails or the outcomes are not all pulled; the time target
is reported, not enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.loop_crm import LoopCrm, crm_section  # noqa: E402
from tests.small_models import save_small_models  # noqa: E402

CONFIG = ROOT / "01_Documentos" / "config.yaml"
RAW = ROOT / "02_Datos" / "01_Originales" / "Leads.csv"
TARGET_SECONDS = 300.0
CRM_FIELDS = {"score": "lead_score", "bucket": "score_bucket", "grade": "lead_grade", "fit_score": "fit_score"}


def make_project(folder: Path, crm_url: str, tolerance: float) -> Path:
    """The shipped configuration with its products in ``folder``, the CRM at ``crm_url``; its path."""
    conf = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    conf["paths"].update(raw_data=str(RAW), notebooks_dir=str(ROOT / "03_Notebooks"))
    conf["paths"]["rules_table"] = str(ROOT / "01_Documentos" / "scoring_rules.csv")
    conf["crm"] = crm_section(crm_url, page_size=2000)
    conf["scoring"]["crm_fields"] = CRM_FIELDS
    conf["loop"] = {"tolerance": tolerance}
    (folder / "01_Documentos").mkdir(parents=True, exist_ok=True)
    path = folder / "01_Documentos" / "config.yaml"
    path.write_text(yaml.safe_dump(conf, sort_keys=False), encoding="utf-8")
    return path


def small_models(config: Path, dest: Path) -> None:
    """A calibrated XGBoost scoring model and a segment model on 800 shipped leads."""
    from leadscoring.config import load_config
    from leadscoring.ingest.load import read_leads
    from leadscoring.ingest.split import stratified_sample

    cfg = load_config(config)
    sample = stratified_sample(read_leads(RAW, cfg), 800, cfg.data.target_column, 0)
    save_small_models(cfg, sample, dest, name="bench (small)")


def make_leads(n: int, seed: int) -> pd.DataFrame:
    """``n`` leads drawn from the shipped export (the outcome column kept), numeric fields jittered."""
    conf = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    data = conf["data"]
    raw = pd.read_csv(RAW, sep=data["separator"], dtype=str, keep_default_na=False)
    rng = np.random.default_rng(seed)
    rows = raw.iloc[rng.integers(0, len(raw), n)].reset_index(drop=True)
    for col in data["columns"]["numeric"]:
        value = pd.to_numeric(rows[col], errors="coerce")
        jittered = (value * rng.uniform(0.8, 1.2, n)).round(0 if col != "paginas_vistas_visita" else 2)
        low, high = data["ranges"].get(col, [None, None])
        jittered = jittered.clip(lower=low, upper=high)
        rows[col] = np.where(value.isna(), rows[col], jittered.astype(str).str.removesuffix(".0"))
    rows[data["id_column"]] = [f"b{seed}-{i:07d}" for i in range(n)]
    return rows


def write_export(rows: pd.DataFrame, target: str, path: Path) -> None:
    rows.drop(columns=[target]).to_csv(path, sep=";", index=False)


def run_night(config: Path, export: Path, label: str) -> dict[str, Any]:
    """One ``leadscoring cycle`` in a child process: exit code, seconds, peak RSS (its own
    rusage, ``os.wait4``), its run log lines."""
    argv = [
        str(Path(sys.executable).with_name("leadscoring")),
        "--config",
        str(config),
        "cycle",
        "--leads",
        str(export),
        "--no-progress",
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # an installed package's bytecode is kept
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=err, text=True, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - t0
        child.returncode = code = os.waitstatus_to_exitcode(status)
        err.seek(0)
        errors = err.read()
    log = config.parent / "run_log.jsonl"
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if "cycle" in line and "step" in line]  # not the retraining's own line
    last = lines[-1]["cycle"]
    steps = [line for line in lines if line["cycle"] == last]
    print(f"\n{label}: exit {code} in {seconds:.1f} s, peak RSS {usage.ru_maxrss / 1024:.0f} MB")
    for s in steps:
        print(f"  {s['step']:<10} {s['status']:<8} {s['seconds']:7.1f} s  {s['summary'][:160]}")
        if s["figures"].get("failures"):
            print(f"             failures: {s['figures']['failures']}")
    if code != 0:
        print(errors[-3000:])
    return {"code": code, "seconds": seconds, "rss_kb": usage.ru_maxrss, "steps": {s["step"]: s for s in steps}}


def set_tolerance(config: Path, tolerance: float) -> None:
    conf = yaml.safe_load(config.read_text(encoding="utf-8"))
    conf["loop"] = {"tolerance": tolerance}
    config.write_text(yaml.safe_dump(conf, sort_keys=False), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--open", type=int, default=100_000, help="open leads (default 100,000)")
    p.add_argument("--outcomes", type=int, default=5_000, help="leads closed before night 2 (default 5,000)")
    p.add_argument("--changed", type=int, default=2_000, help="open leads with new inputs on night 2 (default 2,000)")
    p.add_argument(
        "--nights",
        nargs="+",
        default=["promoted", "kept"],
        choices=["promoted", "kept", "rule"],
        help="night 2 variants, each from the same night 1: promoted (tolerance 1), kept (tolerance -1), "
        "rule (the configuration's 0.005); default: promoted kept",
    )
    p.add_argument("--models", type=Path, default=ROOT / "04_Modelos", help="models to start from (default: 04_Modelos)")
    p.add_argument("--dir", type=Path, help="work folder (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench_cycle_", dir=args.dir))
    crm = LoopCrm()
    target = "compra"
    try:
        config = make_project(work / "night1", crm.url, 0.005)
        models = config.parent.parent / "04_Modelos"
        if (args.models / "lead_scoring_model.pkl").is_file():
            shutil.copytree(args.models, models, ignore=shutil.ignore_patterns("versions"))
            print(f"models: {args.models} (the production run's recipe)")
        else:
            models.mkdir(parents=True)
            t0 = time.perf_counter()
            small_models(config, models)
            print(f"models: no {args.models / 'lead_scoring_model.pkl'}; a small model trained ({time.perf_counter() - t0:.0f} s)")
        leads = make_leads(args.open + args.outcomes, seed=1)
        # Made over the week before night 1, one every 5 seconds.
        crm.add(leads["id"].tolist(), at=datetime.now(UTC) - timedelta(days=7), step=timedelta(seconds=5))
        write_export(leads, target, config.parent.parent / "open_leads.csv")
        print(f"leads: {len(leads):,} in the CRM and the export ({args.open:,} stay open, {args.outcomes:,} will close)")

        night1 = run_night(config, config.parent.parent / "open_leads.csv", "night 1 (every lead new)")
        ok = night1["code"] == 0
        after_night1 = crm.snapshot()

        # What happens before night 2, the same for every variant.
        closing = leads.iloc[args.open :]
        rng = np.random.default_rng(2)
        moved = rng.choice(args.open, size=min(args.changed, args.open), replace=False)
        donors = make_leads(len(moved), seed=3)
        columns = [c for c in leads.columns if c not in ("id", target)]
        leads.loc[moved, columns] = donors[columns].to_numpy()
        tolerances = {"promoted": 1.0, "kept": -1.0, "rule": 0.005}
        results = {}
        for variant in args.nights:
            folder = work / f"night2_{variant}"
            shutil.copytree(config.parent.parent, folder)
            night_config = folder / "01_Documentos" / "config.yaml"
            set_tolerance(night_config, tolerances[variant])
            crm.restore(after_night1)
            for lead, won in zip(closing["id"], closing[target].astype(int), strict=True):
                crm.set_status(lead, "won" if won else "lost")
            write_export(leads.iloc[: args.open], target, folder / "open_leads.csv")  # tonight's export: the open leads
            label = f"night 2, {variant} ({args.outcomes:,} new outcomes, {len(moved):,} changed inputs"
            label += f", tolerance {tolerances[variant]:g})"
            night = run_night(night_config, folder / "open_leads.csv", label)
            pull = night["steps"].get("pull", {}).get("figures", {})
            closed = pull.get("appended_outcomes", {})
            ok = ok and night["code"] == 0 and closed.get("converted", 0) + closed.get("lost", 0) == args.outcomes
            night["pushed"] = sum(crm.pushes.values()) - sum(after_night1[1].values())
            results[variant] = night
            retrain = night["steps"].get("retrain", {})
            print(f"  decision: {retrain.get('summary', '')[-220:]}")
            print(f"  {night['pushed']:,} lead(s) pushed (their scores changed)")

        print(f"\nnight 1: {night1['seconds']:.0f} s, peak RSS {night1['rss_kb'] / 1024:.0f} MB")
        for variant, night in results.items():
            steps = night["steps"]
            push = steps.get("push", {}).get("seconds", 0.0)
            met = "met" if night["seconds"] <= TARGET_SECONDS else "NOT met"
            print(
                f"night 2, {variant}: {night['seconds']:.0f} s (target {TARGET_SECONDS:.0f} s: {met}), of which the push "
                f"{push:.0f} s for {night['pushed']:,} lead(s); peak RSS {night['rss_kb'] / 1024:.0f} MB"
            )
        print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
        print(f"outcomes pulled and every night done: {'yes' if ok else 'NO'}")
        return 0 if ok else 1
    finally:
        crm.close()
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
