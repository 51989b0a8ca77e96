"""Batch scoring benchmark: wall time, throughput and peak memory against a bare floor.

Generates N synthetic leads by resampling the shipped export (fresh unique ids), then
measures, each in its own process (peak memory = that process's max RSS):

- floor: pandas ``read_csv`` + the fitted XGBoost ``predict_proba`` on a matrix of the
  model's input width + ``to_csv`` of id and probability (no validation, no features);
- ``leadscoring score`` (local engine, streaming chunks), with and without reasons;
- ``leadscoring score --engine dask`` (local cluster, 2 workers), optionally;
- the full ``leadscoring run``, optionally.

Needs the models of a production run (``make run``). Run on demand:

    .venv/bin/python bench/bench_batch.py --sizes 100000 1000000 [--dask] [--run] [--compare-with CHECKOUT]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
LEADSCORING = [sys.executable, "-m", "leadscoring.cli"]

FLOOR = textwrap.dedent("""
    import sys, pickle, numpy as np, pandas as pd
    from leadscoring.training.pipeline import final_estimator
    src, dst, model_path = sys.argv[1:4]
    model = pickle.load(open(model_path, "rb"))
    xgb = final_estimator(model)
    df = pd.read_csv(src, sep=";")
    width = xgb.n_features_in_
    num = df.select_dtypes("number").to_numpy(dtype=float)
    X = np.zeros((len(df), width))
    X[:, :min(width, num.shape[1])] = num[:, :width]
    p = xgb.predict_proba(X)[:, 1]
    pd.DataFrame({"id": df["id"], "probability": p}).to_csv(dst, index=False)
""")


def make_leads(n: int, dest: Path, seed: int = 0) -> None:
    raw = pd.read_csv(ROOT / "02_Datos" / "01_Originales" / "Leads.csv", sep=";", dtype=str, keep_default_na=False)
    raw = raw.drop(columns=["compra"])
    idx = np.random.default_rng(seed).integers(0, len(raw), size=n)
    out = raw.iloc[idx].reset_index(drop=True)
    out["id"] = np.arange(1_000_000_000, 1_000_000_000 + n).astype(str)
    out.to_csv(dest, sep=";", index=False)


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                total += next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0)
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024


def checkout_python(checkout: Path, folder: Path) -> list[str]:
    """The ``leadscoring`` command of another checkout (``--compare-with``): a throwaway venv
    whose only ``.pth`` puts the checkout first, then this venv's site-packages (whose
    editable-install hook is not loaded, so the checkout's package is imported; checked),
    run with the checkout's own configuration file and this project's models (its models
    folder is linked to ours, so both versions score with the same model)."""
    venv = folder / "compare-venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True, capture_output=True, text=True
    ).stdout.strip()
    ours = next(p for p in sys.path if p.endswith("site-packages"))
    Path(site, "leadscoring_checkout.pth").write_text(f"{checkout.resolve()}\n{ours}\n")
    # -P: the current folder (this checkout, when run from its root) is not put first on sys.path
    found = subprocess.run(
        [str(python), "-P", "-c", "import leadscoring; print(leadscoring.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.strip()
    if not found.startswith(str(checkout.resolve())):
        sys.exit(f"--compare-with: the other checkout's package is not the one imported ({found})")
    models = checkout / "04_Modelos"
    if not models.is_symlink():
        shutil.rmtree(models, ignore_errors=True)
        models.symlink_to(ROOT / "04_Modelos", target_is_directory=True)
    return [str(python), "-P", "-m", "leadscoring.cli", "--config", str(checkout / "01_Documentos" / "config.yaml")]


def measure(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MB, summed over the process tree, sampled every 50 ms)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, _tree_rss_mb(proc.pid))
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} failed:\n{out}\n{err}")
    return wall, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dask", action="store_true", help="also the dask engine (local cluster, 2 workers)")
    ap.add_argument("--run", action="store_true", help="also time the full `leadscoring run`")
    ap.add_argument(
        "--reasons-max",
        type=int,
        default=100_000,
        help="measure with reasons only up to this size (TreeSHAP dominates: ~0.3 ms/lead)",
    )
    ap.add_argument(
        "--compare-with",
        type=Path,
        metavar="CHECKOUT",
        help="also measure the `leadscoring score` variants with the package of another checkout "
        "(e.g. a `git worktree` of an earlier commit), in the same run, same data and models",
    )
    args = ap.parse_args()
    model = ROOT / "04_Modelos" / "lead_scoring_model.pkl"
    if not model.is_file():
        sys.exit("no model: run `make run` first")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        before = checkout_python(args.compare_with, tmp) if args.compare_with else None
        for n in args.sizes:
            src = tmp / f"leads_{n}.csv"
            make_leads(n, src)
            floor = measure([sys.executable, "-c", FLOOR, str(src), str(tmp / "floor.csv"), str(model)])
            rows.append(("floor (read_csv + XGBoost + to_csv)", n, *floor, floor[0]))
            variants = [
                ("leadscoring score --no-reasons --jobs 1", ["--no-reasons", "--jobs", "1"]),
                ("leadscoring score --no-reasons (2 jobs)", ["--no-reasons", "--jobs", "2"]),
            ]
            if n <= args.reasons_max:
                variants[:0] = [
                    ("leadscoring score, with reasons --jobs 1", ["--jobs", "1"]),
                    ("leadscoring score, with reasons (2 jobs)", ["--jobs", "2"]),
                ]
            versions = [("", LEADSCORING)] + ([("[before] ", before)] if before else [])
            for label, extra in variants:
                for tag, command in versions:
                    flags = [*extra, "--no-history"]  # never the project's score history
                    if command is not LEADSCORING:  # an earlier version: its spelling, and it has no history
                        flags = [f.replace("--no-reasons", "--no-factors") for f in extra]
                    res = measure([*command, "score", "--input", str(src), "--output", str(tmp / "s.csv"), "--no-progress", *flags])
                    rows.append((tag + label, n, *res, floor[0]))
            if args.dask:
                res = measure(
                    [
                        *LEADSCORING,
                        "score",
                        "--engine",
                        "dask",
                        "--input",
                        str(src),
                        "--output",
                        str(tmp / "dask_out"),
                        "--workers",
                        "2",
                        "--no-reasons",
                        "--no-history",
                    ]
                )
                rows.append(("score --engine dask --no-reasons (2 workers)", n, *res, floor[0]))
            src.unlink()
        if args.run:
            res = measure([*LEADSCORING, "run", "--no-progress"])
            rows.append(("leadscoring run (10 notebooks)", 7274, *res, float("nan")))
    print(f"{'what':<55} {'leads':>9} {'seconds':>8} {'leads/s':>9} {'peak MB':>8} {'x floor':>7}")
    for label, n, wall, peak, floor_wall in rows:
        print(f"{label:<55} {n:>9,} {wall:>8.1f} {n / wall:>9,.0f} {peak:>8.0f} {wall / floor_wall:>7.2f}")
    print(f"machine: {os.cpu_count()} cores; targets: 1M leads <= 2x floor time and < 2 GB peak (aim < 1 GB)")


if __name__ == "__main__":
    main()
