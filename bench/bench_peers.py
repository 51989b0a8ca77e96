"""Peers benchmark: the project against default CatBoost and LightGBM on a set of exports.

For each export of the set (the shipped data, real public lead / conversion exports found in
``--data-dir``, and exports generated here with planted leaks):

1. split it: the latest 20 % of the leads to test on when the export has a creation date,
   otherwise a stratified 20 % (fixed seed); the other 80 % is what everyone learns from;
2. the project: ``leadscoring init`` on the 80 % in a temporary project (only ``--target``,
   ``--positive`` and, when the export has one, ``--date``; the drafted configuration is
   never edited), the full ``leadscoring run``, then ``leadscoring score`` of the 20 %
   (without the target);
3. the peers: default ``CatBoostClassifier`` (text columns as ``cat_features``) and default
   ``LGBMClassifier`` (text columns as pandas ``category``), fixed seed, one thread each,
   trained on the same 80 % without the ids, the creation date and the export's known leaky
   fields (named in its entry below: the project has to find those by itself);
4. ROC-AUC and Brier of each on the 20 %, and ``ratio`` = project ROC-AUC / best peer ROC-AUC.

Targets: ratio >= 1.00 on the shipped data and on average over the set, >= 0.99 on every
export. The project is called as a command (``--cli``, default the ``leadscoring`` beside this
Python), so another checkout's install can be measured with this one's peers:

    .venv/bin/python bench/bench_peers.py --out peers.csv                     # the whole set
    .venv/bin/python bench/bench_peers.py --only bank_marketing --out peers.csv  # one export (merged into peers.csv)
    .venv/bin/python bench/bench_peers.py --cli /tmp/before/.venv/bin/leadscoring --out before.csv
    .venv/bin/python bench/bench_peers.py --list

Needs the ``bench`` extra (``catboost``, ``lightgbm``). The public exports are not in the
repository: bench/README.md says where each comes from and its licence; put them in
``--data-dir`` (default ``$LEADSCORING_PEERS_DATA`` or /work/peers-data). A missing file is
skipped with a note. Nothing is written into the project's own folders: every project,
split and generated export lives in a temporary folder (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SEED = 20_260_601
TEST_SHARE = 0.2
DEFAULT_DATA_DIR = os.environ.get("LEADSCORING_PEERS_DATA", "/work/peers-data")
TARGET_SHIPPED, TARGET_MEAN, TARGET_EACH = 1.00, 1.00, 0.99

log = logging.getLogger("bench_peers")


# ---------------------------------------------------------------------------------------------
# The set
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Export:
    """One export of the set. ``file`` is relative to the data folder (``data``), absolute
    (``shipped``) or made by ``build`` in the work folder (``built``, ``generated``)."""

    name: str
    file: str
    target: str
    positive: str
    separator: str
    kind: str = "data"  # shipped | data | built | generated
    ids: tuple[str, ...] = ()  # id columns: never features for the peers
    date: str | None = None  # creation date: the test split is the latest 20 %
    leaky: tuple[str, ...] = ()  # known post-outcome fields: dropped for the peers only
    encoding: str = "utf-8"
    decimal: str = "."
    needs: tuple[str, ...] = ()  # raw files (in the data folder) that ``build`` reads
    build: Callable[[Path, Path], None] | None = None  # build(data_dir, dest)
    shape: str = ""  # one line for the table of the set


def _build_olist(data_dir: Path, dest: Path) -> None:
    """Olist's marketing funnel as one CRM export: every marketing-qualified lead, left-joined
    with its closed deal (the deal's fields are filled only for the leads that were won)."""
    mql = pd.read_csv(data_dir / "olist_marketing_qualified_leads_dataset.csv", dtype=str, keep_default_na=False)
    deals = pd.read_csv(data_dir / "olist_closed_deals_dataset.csv", dtype=str, keep_default_na=False)
    out = mql.merge(deals, on="mql_id", how="left", validate="one_to_one")
    out["won"] = np.where(out["mql_id"].isin(set(deals["mql_id"])), "1", "0")
    out.fillna("").to_csv(dest, index=False)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _generated_leads(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Pre-contact lead fields with a known, partly non-linear link to conversion. Returns
    the fields, the outcome (0/1) and each lead's creation time (seconds since 2024-01-01)."""
    rng = np.random.default_rng(seed)
    interest = rng.normal(size=n)  # latent: drives behaviour and conversion
    sources = np.array(["Google", "Direct", "Referral", "Facebook", "Email", "Partner", "Events", "Organic"])
    src = rng.choice(len(sources), size=n, p=[0.28, 0.16, 0.08, 0.14, 0.1, 0.06, 0.04, 0.14])
    src_effect = np.array([0.0, 0.2, 0.9, -0.6, 0.3, 0.7, 0.5, 0.1])[src]
    jobs = np.array(["Student", "Unemployed", "Working Professional", "Manager", "Founder", "Other", ""])
    job = rng.choice(len(jobs), size=n, p=[0.2, 0.25, 0.25, 0.1, 0.05, 0.05, 0.1])
    job_effect = np.array([-0.4, -0.2, 0.5, 0.6, 0.9, 0.0, -0.3])[job]
    countries = np.array(["ES", "MX", "AR", "CO", "CL", "PE", "US", ""])
    country = rng.choice(len(countries), size=n, p=[0.3, 0.2, 0.1, 0.1, 0.08, 0.07, 0.1, 0.05])
    size = np.round(np.exp(rng.normal(3.0, 1.4, size=n))).astype(int)
    size_missing = rng.random(n) < 0.12
    visits = rng.poisson(np.exp(0.9 + 0.35 * interest))
    seconds = np.where(visits > 0, rng.gamma(2.0, 180.0 * np.exp(0.5 * interest)), 0.0).round()
    pages = np.where(visits > 0, np.round(rng.gamma(2.0, 1.2, size=n) + 1.0, 2), 0.0)
    webinar = rng.random(n) < _sigmoid(-1.5 + 0.8 * interest)
    brochure = rng.random(n) < 0.3
    created = np.sort(rng.uniform(0, 540 * 86400, size=n))
    drift = 0.4 * created / created.max()  # leads convert a little more over time
    logit = (
        -1.6
        + src_effect
        + job_effect
        + 0.8 * interest
        + 1.2 * np.tanh(seconds / 600.0)
        - 0.3 * (pages > 6)
        + np.where(job == 3, 0.25 * np.log1p(size), 0.0)
        + 0.4 * webinar
        + drift
    )
    y = (rng.random(n) < _sigmoid(logit)).astype(int)
    fields = pd.DataFrame(
        {
            "source": sources[src],
            "country": countries[country],
            "job_title": jobs[job],
            "company_size": np.where(size_missing, -1, size).astype(str),
            "visits": visits.astype(str),
            "time_on_site": seconds.astype(int).astype(str),
            "pages_per_visit": pages.astype(str),
            "webinar": np.where(webinar, "Yes", "No"),
            "brochure": np.where(brochure, "Yes", "No"),
        }
    )
    return fields, y, created


def _fill(rng: np.random.Generator, y: np.ndarray, share: float, values: np.ndarray) -> np.ndarray:
    """``values`` where the lead converted and a coin with ``share`` says so, else empty."""
    keep = (y == 1) & (rng.random(len(y)) < share)
    return np.where(keep, values.astype(str), "")


def _build_deal_block(data_dir: Path, dest: Path) -> None:
    """6,000 generated leads with a creation time and a block of post-outcome deal fields of
    different sparsities, each filled only for converted leads."""
    n, seed = 6000, SEED + 1
    fields, y, created = _generated_leads(n, seed)
    rng = np.random.default_rng(seed + 100)
    start = pd.Timestamp("2024-01-01")
    out = pd.DataFrame({"lead_id": [f"L{100000 + i}" for i in range(n)]})
    out["created_at"] = (start + pd.to_timedelta(created, unit="s")).strftime("%Y-%m-%d %H:%M")
    out = pd.concat([out, fields], axis=1)
    out["deal_amount"] = _fill(rng, y, 0.95, np.round(rng.gamma(3.0, 900.0, size=n), 2))
    out["stage"] = _fill(rng, y, 0.70, rng.choice(np.array(["Closed Won", "Contract sent", "Onboarding"]), size=n))
    out["contract_months"] = _fill(rng, y, 0.40, rng.choice(np.array([1, 3, 6, 12, 24]), size=n))
    out["signed_on"] = _fill(
        rng, y, 0.60, (start + pd.to_timedelta(created + 20 * 86400, unit="s")).strftime("%Y-%m-%d").to_numpy()
    )
    out["account_manager"] = _fill(rng, y, 0.20, rng.choice(np.array(["Ana", "Luis", "Marta", "Jorge", "Sofia", "Pablo"]), size=n))
    out["upsell_product"] = _fill(rng, y, 0.05, rng.choice(np.array(["Premium", "Support", "Training"]), size=n))
    out["converted"] = np.where(y == 1, "yes", "no")
    out.to_csv(dest, index=False)


def _build_status_tag(data_dir: Path, dest: Path) -> None:
    """5,000 generated leads, no id and no date, ';' with decimal commas, with a status tag,
    a lead grade and the call's length written after the sales contact."""
    n, seed = 5000, SEED + 2
    fields, y, _ = _generated_leads(n, seed)
    rng = np.random.default_rng(seed + 100)
    fields["pages_per_visit"] = fields["pages_per_visit"].str.replace(".", ",", regex=False)
    pos_tags = np.array(["Closed by Horizzon", "Will revert after reading the email", ""])
    neg_tags = np.array(["Ringing", "Interested in other courses", "Already a student", "Will revert after reading the email", ""])
    tag = np.where(
        y == 1,
        pos_tags[rng.choice(3, size=n, p=[0.55, 0.2, 0.25])],
        neg_tags[rng.choice(5, size=n, p=[0.3, 0.2, 0.1, 0.05, 0.35])],
    )
    grades = np.array(["A", "B", "C", "D", ""])
    grade = np.where(
        y == 1,
        grades[rng.choice(5, size=n, p=[0.5, 0.3, 0.15, 0.0, 0.05])],
        grades[rng.choice(5, size=n, p=[0.05, 0.2, 0.35, 0.3, 0.1])],
    )
    called = rng.random(n) < 0.8
    minutes = np.where(y == 1, rng.gamma(3.0, 4.0, size=n), rng.gamma(1.5, 2.5, size=n))
    out = fields.copy()
    out["Tag"] = tag
    out["Lead Grade"] = grade
    out["call_minutes"] = np.where(called, np.char.replace(np.round(minutes, 1).astype(str), ".", ","), "")
    out["Outcome"] = np.where(y == 1, "Won", "Lost")
    out.to_csv(dest, sep=";", index=False)


SET: tuple[Export, ...] = (
    Export(
        "shipped",
        str(ROOT / "02_Datos" / "01_Originales" / "Leads.csv"),
        "compra",
        "1",
        ";",
        kind="shipped",
        ids=("id",),
        # The company's activity and profile scores (X Education's Asymmetrique scores) are
        # assigned during the sales process: the project's own config names them post-contact.
        leaky=("score_actividad", "score_perfil"),
        shape="7,274 leads, 21 columns, ';', Spanish names, id, no date",
    ),
    Export(
        "bank_marketing",
        "bank-full.csv",
        "y",
        "yes",
        ";",
        leaky=("duration",),  # the call's length: known only after the call (UCI's own note)
        shape="45,211 calls, 17 columns, ';', quoted text, no id, month/day but no year",
    ),
    Export(
        "online_shoppers",
        "online_shoppers_intention.csv",
        "Revenue",
        "TRUE",
        ",",
        # Google Analytics' page value: the revenue of the transactions that followed a visit to
        # the page, so a buying session raises the value of every page it saw (its own outcome)
        leaky=("PageValues",),
        shape="12,330 sessions, 18 columns, ',', TRUE/FALSE, month names, no id, no date",
    ),
    Export(
        "xeducation",
        "xeducation_leads.csv",
        "Converted",
        "1",
        ",",
        ids=("Prospect ID", "Lead Number"),
        leaky=(
            "Tags",
            "Lead Quality",
            "Lead Profile",
            "Asymmetrique Activity Index",
            "Asymmetrique Profile Index",
            "Asymmetrique Activity Score",
            "Asymmetrique Profile Score",
            "Last Notable Activity",
        ),
        shape="9,240 leads, 37 columns + an empty trailing one, ',', 'Select' placeholders, two ids, no date",
    ),
    Export(
        "olist_funnel",
        "olist_funnel.csv",
        "won",
        "1",
        ",",
        kind="built",
        ids=("mql_id",),
        date="first_contact_date",
        leaky=(
            "seller_id",
            "sdr_id",
            "sr_id",
            "won_date",
            "business_segment",
            "lead_type",
            "lead_behaviour_profile",
            "has_company",
            "has_gtin",
            "average_stock",
            "business_type",
            "declared_product_catalog_size",
            "declared_monthly_revenue",
        ),
        needs=("olist_marketing_qualified_leads_dataset.csv", "olist_closed_deals_dataset.csv"),
        build=_build_olist,
        shape="8,000 B2B leads, 18 columns, ',', 13 deal fields filled only for the 842 won, creation date",
    ),
    Export(
        "ifood_campaign",
        "marketing_campaign.csv",
        "Response",
        "1",
        ";",
        ids=("ID",),
        date="Dt_Customer",
        encoding="utf-8-sig",
        shape="2,240 customers, 29 columns, ';', UTF-8 BOM, two constant columns, enrolment date",
    ),
    Export(
        "gen_deal_block",
        "gen_deal_block.csv",
        "converted",
        "yes",
        ",",
        kind="generated",
        ids=("lead_id",),
        date="created_at",
        leaky=("deal_amount", "stage", "contract_months", "signed_on", "account_manager", "upsell_product"),
        build=_build_deal_block,
        shape="6,000 generated leads, ',', creation time, 6 deal fields filled for 95/70/60/40/20/5 % of the converted",
    ),
    Export(
        "gen_status_tag",
        "gen_status_tag.csv",
        "Outcome",
        "Won",
        ";",
        kind="generated",
        decimal=",",
        leaky=("Tag", "Lead Grade", "call_minutes"),
        build=_build_status_tag,
        shape="5,000 generated leads, ';', decimal commas, no id, no date, status tag + grade + call length",
    ),
)


# ---------------------------------------------------------------------------------------------
# Reading and splitting
# ---------------------------------------------------------------------------------------------


def read_export(path: Path, exp: Export) -> tuple[pd.DataFrame, list[str]]:
    """Every value as text, exactly as written (empty stays empty), and the raw header (an
    empty header stays empty when the split files are written back)."""
    with open(path, encoding=exp.encoding, newline="") as fh:
        header = next(csv.reader(fh, delimiter=exp.separator))
    df = pd.read_csv(path, sep=exp.separator, dtype=str, keep_default_na=False, encoding=exp.encoding)
    if len(header) != df.shape[1]:
        header = list(df.columns)
    return df, header


def positives(df: pd.DataFrame, exp: Export) -> np.ndarray:
    return (df[exp.target].str.strip() == exp.positive).to_numpy().astype(int)


def split(df: pd.DataFrame, exp: Export) -> tuple[np.ndarray, np.ndarray, str]:
    """Row positions to learn from and to test on: the latest 20 % by creation date, else a
    stratified 20 %."""
    n = len(df)
    n_test = math.ceil(TEST_SHARE * n)
    if exp.date:
        when = pd.to_datetime(df[exp.date], errors="coerce", format="mixed")
        order = np.argsort(when.fillna(pd.Timestamp.min).to_numpy(), kind="stable")
        return np.sort(order[: n - n_test]), np.sort(order[n - n_test :]), "latest 20%"
    from sklearn.model_selection import train_test_split

    learn, test = train_test_split(np.arange(n), test_size=n_test, stratify=positives(df, exp), random_state=SEED)
    return np.sort(learn), np.sort(test), "stratified 20%"


def write_like(df: pd.DataFrame, header: list[str], path: Path, exp: Export) -> None:
    df.to_csv(path, sep=exp.separator, index=False, header=header, encoding=exp.encoding)


# ---------------------------------------------------------------------------------------------
# The project, through its command line
# ---------------------------------------------------------------------------------------------


class StepFailed(Exception):
    """A project command failed: the message is its one-line error."""


def _env(cli: Path, work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["MPLCONFIGDIR"] = str(work / ".mpl")
    env["IPYTHONDIR"] = str(work / ".ipython")
    env["PYTHONUNBUFFERED"] = "1"
    # the notebooks' kernel of the CLI's own environment, found before any other
    kernels = cli.resolve().parent.parent / "share" / "jupyter"
    if kernels.is_dir():
        env["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(kernels), env.get("JUPYTER_PATH", "")) if p)
    return env


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def run_cli(step: str, argv: list[str], cwd: Path, env: dict[str, str], timeout: float, logfile: Path) -> str:
    """Run one command in its own process group (a timeout ends the group: the command and
    the notebook kernels it started); its output goes to ``logfile``."""
    log.debug("%s: %s (in %s)", step, " ".join(argv), cwd)
    with open(logfile, "a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
            )
        except OSError as exc:  # not executable, not found
            raise StepFailed(f"{step}: cannot start {argv[0]}: {exc.strerror}") from None
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
            raise StepFailed(f"{step}: no result after {timeout:.0f}s") from None
        out.write(stdout + stderr)
    if proc.returncode != 0:
        raise StepFailed(f"{step}: {_last_line(stderr) or _last_line(stdout) or f'exit code {proc.returncode}'}")
    return stdout


def project_scores(
    exp: Export, cli: Path, work: Path, learn_csv: Path, test_csv: Path, test: pd.DataFrame, timeout: float
) -> tuple[np.ndarray, dict[str, str]]:
    """init + run on the learning split, score the test split; the probabilities in the test
    split's order and a note (what the project's leakage audit excluded)."""
    import yaml

    env, proj, logfile = _env(cli, work), work / "project", work / "project.log"
    argv = [str(cli), "init", str(proj), "--input", str(learn_csv), "--target", exp.target, "--positive", exp.positive]
    if exp.date:
        argv += ["--date", exp.date]
    summary = run_cli("init", argv, work, env, timeout, logfile)
    for line in summary.splitlines():
        log.info("  init | %s", line)
    started = time.perf_counter()
    out = run_cli("run", [str(cli), "run", "--no-progress"], proj, env, timeout, logfile)
    log.info("  run  | %s (%.0fs)", (out.splitlines() or ["done"])[0], time.perf_counter() - started)
    scores_csv = work / "scores.csv"
    argv = [
        str(cli),
        "score",
        "--input",
        str(test_csv),
        "--output",
        str(scores_csv),
        "--no-history",
        "--no-reasons",
        "--no-progress",
    ]
    run_cli("score", argv, proj, env, timeout, logfile)

    cfg = yaml.safe_load((proj / "01_Documentos" / "config.yaml").read_text())["data"]
    scores = pd.read_csv(scores_csv, dtype=str, keep_default_na=False)
    id_col = cfg["id_column"]
    proba = pd.to_numeric(scores["probability"]).to_numpy()
    if cfg.get("id_from_row_number"):
        pos = scores[id_col].astype(int).to_numpy() - 1
    else:
        where = {v: i for i, v in enumerate(test[id_col].str.strip())}
        pos = np.array([where.get(v.strip(), -1) for v in scores[id_col]])
    if len(scores) != len(test) or (pos < 0).any() or len(set(pos)) != len(test):
        raise StepFailed(f"score: {len(scores)} scores for {len(test)} test leads could not be matched by {id_col!r}")
    ordered = np.empty(len(test))
    ordered[pos] = proba
    return ordered, project_facts(exp, proj)


def project_facts(exp: Export, proj: Path) -> dict[str, str]:
    """What the project's model is, which of the export's known leaky fields it reads (from
    the model's manifest) and what its leakage audit excluded."""
    import json

    facts = {"model": "", "leaky_used": "", "note": ""}
    manifest = proj / "04_Modelos" / "lead_scoring_model.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        features = [str(f) for f in m.get("features", [])]
        facts["model"] = str(m.get("model_name", ""))
        used = [c for c in exp.leaky if any(f == c or f.startswith(f"{c}_") for f in features)]
        facts["leaky_used"] = "; ".join(used)
    audit = proj / "05_Resultados" / "leakage_audit.csv"
    if audit.exists():
        a = pd.read_csv(audit)
        excluded = a.loc[a["verdict"].astype(str) == "excluded", "variable"].astype(str).tolist()
        facts["note"] = f"audit excluded: {', '.join(excluded) or 'none'}"
    return facts


# ---------------------------------------------------------------------------------------------
# The peers
# ---------------------------------------------------------------------------------------------


def peer_frames(learn: pd.DataFrame, test: pd.DataFrame, exp: Export) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Features for the peers: every column but the target, ids, the date, the known leaky
    fields, empty-headed and constant ones; numbers where every non-empty value of the
    learning split reads as a number, text otherwise (missing = NaN)."""
    drop = {exp.target, *exp.ids, *exp.leaky, *([exp.date] if exp.date else [])}
    missing = drop - set(learn.columns)
    if missing:
        raise KeyError(f"{exp.name}: columns named in the entry are not in the export: {sorted(missing)}")
    cols = [c for c in learn.columns if c not in drop and not c.startswith("Unnamed: ")]
    xl, xt, text = pd.DataFrame(index=learn.index), pd.DataFrame(index=test.index), []
    for c in cols:
        a, b = learn[c].str.strip().replace("", np.nan), test[c].str.strip().replace("", np.nan)
        if a.nunique(dropna=False) <= 1:
            continue
        na, nb = (a.str.replace(",", ".", regex=False), b.str.replace(",", ".", regex=False)) if exp.decimal == "," else (a, b)
        num_a = pd.to_numeric(na, errors="coerce")
        if num_a.notna().sum() == a.notna().sum():
            xl[c], xt[c] = num_a, pd.to_numeric(nb, errors="coerce")
        else:
            xl[c], xt[c] = a, b
            text.append(c)
    return xl, xt, text


def peer_scores(xl: pd.DataFrame, yl: np.ndarray, xt: pd.DataFrame, text: list[str]) -> dict[str, np.ndarray]:
    from catboost import CatBoostClassifier
    from lightgbm import LGBMClassifier

    out = {}
    cl, ct = xl.copy(), xt.copy()
    for c in text:
        cl[c], ct[c] = cl[c].fillna("(missing)"), ct[c].fillna("(missing)")
    cb = CatBoostClassifier(random_seed=SEED, thread_count=1, verbose=False, allow_writing_files=False)
    cb.fit(cl, yl, cat_features=text)
    out["catboost"] = cb.predict_proba(ct)[:, 1]

    ll, lt = xl.copy(), xt.copy()
    for c in text:
        cats = pd.Index(sorted(ll[c].dropna().unique()))
        ll[c] = pd.Categorical(ll[c], categories=cats)
        lt[c] = pd.Categorical(lt[c].where(lt[c].isin(cats)), categories=cats)  # unseen levels: missing
    lgb = LGBMClassifier(random_state=SEED, n_jobs=1, verbose=-1)
    lgb.fit(ll, yl)
    out["lightgbm"] = lgb.predict_proba(lt)[:, 1]
    return out


# ---------------------------------------------------------------------------------------------
# One export, the table
# ---------------------------------------------------------------------------------------------

COLUMNS = [
    "export",
    "rows",
    "test_rows",
    "test_conversion",
    "split",
    "project_auc",
    "project_brier",
    "catboost_auc",
    "catboost_brier",
    "lightgbm_auc",
    "lightgbm_brier",
    "ratio",
    "model",
    "leaky_used",
    "project_s",
    "peers_s",
    "note",
]


def locate(exp: Export, data_dir: Path, work: Path) -> Path | None:
    """The export's file, building it when it is built or generated; None when missing."""
    if exp.kind == "shipped":
        path = Path(exp.file)
        return path if path.exists() else None
    if exp.kind == "data":
        path = data_dir / exp.file
        return path if path.exists() else None
    if any(not (data_dir / f).exists() for f in exp.needs):
        return None
    path = work / exp.file
    exp.build(data_dir, path)
    return path


def bench_one(exp: Export, cli: Path | None, data_dir: Path, work: Path, timeout: float) -> dict[str, object]:
    from sklearn.metrics import brier_score_loss, roc_auc_score

    row: dict[str, object] = {"export": exp.name}
    path = locate(exp, data_dir, work)
    if path is None:
        wanted = [exp.file] if exp.kind == "data" else list(exp.needs) or [exp.file]
        row["note"] = f"skipped: {', '.join(wanted)} not in {data_dir if exp.kind != 'shipped' else Path(exp.file).parent}"
        return row
    df, header = read_export(path, exp)
    learn_pos, test_pos, how = split(df, exp)
    learn, test = df.iloc[learn_pos], df.iloc[test_pos]
    y_test = positives(test, exp)
    row.update(rows=len(df), test_rows=len(test), test_conversion=round(float(y_test.mean()), 4), split=how)
    log.info(
        "%s: %d rows (%s), learn %d, test %d (%.1f%% converted)",
        exp.name,
        len(df),
        path,
        len(learn),
        len(test),
        100 * y_test.mean(),
    )

    learn_csv = work / f"{exp.name}_learn.csv"
    test_csv = work / f"{exp.name}_test.csv"
    write_like(learn, header, learn_csv, exp)
    keep = [i for i, c in enumerate(df.columns) if c != exp.target]
    write_like(test.iloc[:, keep], [header[i] for i in keep], test_csv, exp)

    started = time.perf_counter()
    try:
        if cli is None:
            raise StepFailed("project not run (--peers-only)")
        proba, facts = project_scores(exp, cli, work, learn_csv, test_csv, test, timeout)
        row["project_auc"] = round(float(roc_auc_score(y_test, proba)), 4)
        row["project_brier"] = round(float(brier_score_loss(y_test, proba)), 4)
        row.update(facts)
    except StepFailed as exc:
        row["note"] = str(exc)
        log.warning("%s: %s", exp.name, exc)
    row["project_s"] = round(time.perf_counter() - started)

    started = time.perf_counter()
    xl, xt, text = peer_frames(learn, test, exp)
    for name, p in peer_scores(xl, positives(learn, exp), xt, text).items():
        row[f"{name}_auc"] = round(float(roc_auc_score(y_test, p)), 4)
        row[f"{name}_brier"] = round(float(brier_score_loss(y_test, p)), 4)
    row["peers_s"] = round(time.perf_counter() - started)
    if "project_auc" in row:
        row["ratio"] = round(float(row["project_auc"]) / max(float(row["catboost_auc"]), float(row["lightgbm_auc"])), 4)
    log.info(
        "%s: project %s, catboost %s, lightgbm %s, ratio %s",
        exp.name,
        row.get("project_auc", "-"),
        row["catboost_auc"],
        row["lightgbm_auc"],
        row.get("ratio", "-"),
    )
    return row


def merge(out: Path | None, rows: list[dict[str, object]]) -> pd.DataFrame:
    """This run's rows, replacing the same exports' rows of an earlier ``--out`` file, in the
    set's order."""
    table = pd.DataFrame(rows, columns=COLUMNS)
    if out is not None and out.exists():
        old = pd.read_csv(out, dtype=object, keep_default_na=False)
        old = old[~old["export"].isin(table["export"])].reindex(columns=COLUMNS)
        table = pd.concat([old, table], ignore_index=True)
    order = {e.name: i for i, e in enumerate(SET)}
    table = table.sort_values("export", key=lambda s: s.map(order).fillna(len(order)), kind="stable")
    return table.reset_index(drop=True)


def _text(v: object) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip()


def _num(v: object) -> float:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return f


def render(table: pd.DataFrame) -> str:
    def fmt(v: object, digits: int = 3) -> str:
        f = _num(v)
        return "-" if math.isnan(f) else f"{f:.{digits}f}"

    head = (
        f"{'export':<16} {'rows':>7} {'project AUC':>11} {'project Brier':>13} "
        f"{'CatBoost AUC':>12} {'LightGBM AUC':>12} {'ratio':>6}  note"
    )
    lines = [head, "-" * len(head)]
    for r in table.to_dict("records"):
        rows = _num(r.get("rows"))
        lines.append(
            f"{r['export']:<16} {'-' if math.isnan(rows) else f'{rows:,.0f}':>7} {fmt(r.get('project_auc')):>11} "
            f"{fmt(r.get('project_brier')):>13} {fmt(r.get('catboost_auc')):>12} {fmt(r.get('lightgbm_auc')):>12} "
            f"{fmt(r.get('ratio')):>6}  {'USES KNOWN LEAKY ' + str(r['leaky_used']) + '; ' if _text(r.get('leaky_used')) else ''}"
            f"{r.get('note') or ''}"
        )
    ratios = table.assign(r=table["ratio"].map(_num)).dropna(subset=["r"])
    if len(ratios):
        shipped = ratios.loc[ratios["export"] == "shipped", "r"]
        mean, worst = ratios["r"].mean(), ratios.loc[ratios["r"].idxmin()]
        missing = table.loc[table["ratio"].map(_num).isna(), "export"].tolist()

        def verdict(value: float, target: float) -> str:
            return f"target >= {target:.2f}: {'met' if value >= target else 'NOT met'}"

        summary = (
            f"ratio = project ROC-AUC / best peer ROC-AUC; mean over {len(ratios)} exports {mean:.3f} "
            f"({verdict(mean, TARGET_MEAN)}), lowest {worst['r']:.3f} on {worst['export']} "
            f"({verdict(worst['r'], TARGET_EACH)} on each)"
        )
        if len(shipped):
            summary += f"; shipped {shipped.iloc[0]:.3f} ({verdict(shipped.iloc[0], TARGET_SHIPPED)})"
        lines += ["", summary]
        leaky = ratios[ratios["leaky_used"].map(_text) != ""]
        if len(leaky):
            clean = ratios[ratios["leaky_used"].map(_text) == ""]
            lines.append(
                f"the project's model reads fields known to be filled after the outcome on {', '.join(leaky['export'])}: "
                f"their ratio measures the leak, not the modelling"
                + (f"; mean ratio over the {len(clean)} others {clean['r'].mean():.3f}" if len(clean) else "")
            )
        if missing:
            lines.append(f"no ratio (failed or skipped): {', '.join(missing)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--cli", type=Path, default=Path(sys.executable).parent / "leadscoring", help="the leadscoring command to measure"
    )
    p.add_argument(
        "--data-dir", type=Path, default=Path(DEFAULT_DATA_DIR), help="folder of the public exports (env LEADSCORING_PEERS_DATA)"
    )
    p.add_argument("--only", help="comma-separated export names (see --list)")
    p.add_argument("--out", type=Path, help="CSV of the table; rows of exports not run now are kept from an existing file")
    p.add_argument("--work-dir", type=Path, help="where the temporary projects go (default: the system's temporary folder)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds allowed for each project command (default 3600)")
    p.add_argument("--keep", action="store_true", help="keep the temporary projects (their folder is printed)")
    p.add_argument("--peers-only", action="store_true", help="train and measure the peers only (a check of the set)")
    p.add_argument("--list", action="store_true", help="list the set and which files are present, then stop")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    chosen = list(SET)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(names) - {e.name for e in SET})
        if unknown:
            p.error(f"unknown export(s) {unknown}; the set: {', '.join(e.name for e in SET)}")
        chosen = [e for e in SET if e.name in names]
    if args.list:
        for e in SET:
            files = [e.file] if e.kind in ("data", "shipped") else list(e.needs)
            where = [Path(f) if e.kind == "shipped" else args.data_dir / f for f in files]
            state = "generated" if e.kind == "generated" else ("present" if all(w.exists() for w in where) else "MISSING")
            print(f"{e.name:<16} {state:<9} {e.shape}")
        return 0
    if not args.peers_only and not os.access(args.cli, os.X_OK):
        p.error(f"--cli {args.cli} is not an executable file")

    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="bench_peers_", dir=args.work_dir))
    log.info("cli %s; data %s; work %s", args.cli, args.data_dir, root)
    rows: list[dict[str, object]] = []
    try:
        for exp in chosen:
            work = root / exp.name
            work.mkdir()
            t0 = time.perf_counter()
            rows.append(bench_one(exp, None if args.peers_only else args.cli, args.data_dir, work, args.timeout))
            log.info("%s: %.0fs", exp.name, time.perf_counter() - t0)
            if args.out is not None:  # after each export: a long pass keeps what it finished
                merge(args.out, rows).to_csv(args.out, index=False)
    finally:
        if args.keep:
            log.info("kept %s", root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    table = merge(args.out, rows)  # this run's rows replace the same exports' rows (written after each export)
    print()
    print(render(table))
    print(f"\nbench time {time.perf_counter() - started:.0f}s" + (f"; table written to {args.out}" if args.out else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
