"""Leakage audit (notebook 06): fields filled in after the sales contact, found before any
model sees them.

A status tag, the duration of the sales call or a quality grade entered by the sales team
makes a model look brilliant in validation and useless when a new lead must be
prioritised. :func:`leakage_audit` checks every configured column for five signals:

a. it alone ranks leads far better than every other column (out-of-fold ROC-AUC);
b. some of its levels are nearly pure in the outcome and cover a material share of leads;
c. whether it is missing itself predicts the outcome;
d. its name or label reads like an outcome, status, stage, tag, grade or call;
e. the configuration lists it under ``data.post_contact``.

Each column gets a verdict: ``excluded`` (kept out of every model unless
``data.allow_leaky`` names it), ``review`` (listed prominently) or ``ok``. Thresholds live
in the ``leakage`` section of the configuration.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

from leadscoring.config import ProjectConfig
from leadscoring.features.cleaning import LeadCleaner
from leadscoring.features.columns import as_frame
from leadscoring.features.encoding import MISSING_LEVEL, build_encoder

VERDICTS = ("excluded", "review", "ok")
COLUMNS = [
    "variable",
    "label",
    "single_variable_auc",
    "missing_share",
    "missing_auc",
    "purest_level",
    "signals",
    "verdict",
    "reason",
    "allowed",
]


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC read in either direction (0.5 when the score or the target is constant)."""
    if len(np.unique(y)) < 2 or len(np.unique(score)) < 2:
        return 0.5
    auc = float(roc_auc_score(y, score))
    return max(auc, 1.0 - auc)


def _role(cfg: ProjectConfig, col: str) -> str:
    roles = cfg.data.columns
    return "numeric" if col in roles.numeric else "categorical" if col in roles.categorical else "yes_no"


def single_variable_pipeline(cfg: ProjectConfig, col: str, n_rows: int) -> Pipeline:
    """The project's cleaning and encoding of one column, then a small model: a shallow tree
    for a number (any shape of relationship), a logistic regression over the levels otherwise."""
    role, d = _role(cfg, col), cfg.data
    cols = {r: [col] if r == role else [] for r in ("numeric", "categorical", "yes_no")}
    cleaner = LeadCleaner(
        **cols,
        missing_values=list(d.missing_values),
        yes_values=list(d.yes_values),
        clip_quantile=cfg.cleaning.clip_quantile,
        drop_constant=False,
    )
    encoder = build_encoder(cols["numeric"], cols["categorical"], cols["yes_no"], rare_min_share=cfg.cleaning.rare_min_share)
    if role == "numeric":
        model = DecisionTreeClassifier(max_depth=4, min_samples_leaf=max(10, n_rows // 100), random_state=0)
    else:
        model = LogisticRegression(max_iter=1000)
    return Pipeline([("clean", cleaner), ("encode", encoder), ("model", model)])


def _single_auc(cfg: ProjectConfig, col: str, X: pd.DataFrame, y: np.ndarray, cv: object) -> float:
    proba = cross_val_predict(single_variable_pipeline(cfg, col, len(X)), X[[col]], y, cv=cv, method="predict_proba")[:, 1]
    return _auc(y, proba)


def _levels(values: pd.Series, role: str, min_share: float) -> pd.Series:
    """Level of each lead for the purity check: the value itself (numbers: only values
    shared by at least ``min_share`` of leads, e.g. a spike at 0), missing as its own level."""
    if role == "numeric":
        counts = values.value_counts(normalize=True)
        spikes = set(counts.index[counts >= min_share])
        out = values.map(lambda v: f"= {v:g}" if v in spikes else None)
    else:
        out = values.map(lambda v: None if v is None or v != v else str(v))
    return out.where(values.notna(), MISSING_LEVEL)


def _purest_level(levels: pd.Series, y: np.ndarray, rate: float, min_share: float) -> tuple[str, bool]:
    """The largest level nearly pure in the outcome (conversion ≤ rate or ≥ 1 - rate, and at
    most half / twice the overall odds so a rare outcome is not itself 'pure')."""
    base = float(y.mean())
    stats = pd.DataFrame({"level": levels.to_numpy(), "y": y}).dropna().groupby("level")["y"].agg(["mean", "size"])
    stats["share"] = stats["size"] / len(y)
    low = (stats["mean"] <= rate) & (base > 2 * rate)
    high = (stats["mean"] >= 1 - rate) & (1 - base > 2 * rate)
    pure = stats[(low | high) & (stats["share"] >= min_share)].sort_values("share", ascending=False)
    if pure.empty:
        return "", False
    level, row = pure.index[0], pure.iloc[0]
    return f"{level}: {row['share']:.0%} of leads convert at {row['mean']:.1%}", True


def normalised_name(text: str) -> str:
    """Lower-case words without accents: ``"Call Duration (s)"`` → ``"call duration s"``,
    ``"leadStatus"`` → ``"lead status"``."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(text))
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def outcome_like_stems(name: str, stems: Sequence[str]) -> list[str]:
    """Stems the name reads like: short ones (< 5 letters: ``tag``, ``won``) as whole words
    (or plural), longer ones anywhere in the name (``callduration`` → ``duration``)."""
    norm = normalised_name(name)
    words, compact = set(norm.split()), norm.replace(" ", "")
    found = []
    for stem in stems:
        s = normalised_name(stem).replace(" ", "")
        if s and ((len(s) < 5 and (s in words or s + "s" in words)) or (len(s) >= 5 and s in compact)):
            found.append(s)
    return found


def _evidence(cfg: ProjectConfig, X: pd.DataFrame, y: np.ndarray, cv: object) -> pd.DataFrame:
    """Per configured column: single-variable AUC, missingness and its AUC, purest level, name."""
    lk, d = cfg.leakage, cfg.data
    rows = []
    for col in d.columns.all:
        role = _role(cfg, col)
        cleaner = LeadCleaner(
            **{r: [col] if r == role else [] for r in ("numeric", "categorical", "yes_no")},
            missing_values=list(d.missing_values),
            yes_values=list(d.yes_values),
            clip_quantile=None,
            drop_constant=False,
        )
        clean = as_frame(cleaner.fit_transform(X[[col]]))[col]
        missing = clean.isna().to_numpy()
        purest, pure = _purest_level(_levels(clean, role, lk.pure_level_min_share), y, lk.pure_level_rate, lk.pure_level_min_share)
        label = d.labels.get(col, "")
        rows.append(
            {
                "variable": col,
                "label": label,
                "single_variable_auc": _single_auc(cfg, col, X, y, cv),
                "missing_share": float(missing.mean()),
                "missing_auc": _auc(y, missing.astype(float)),
                "purest_level": purest,
                "pure": pure,
                "stems": outcome_like_stems(col, lk.name_stems) or outcome_like_stems(label, lk.name_stems),
            }
        )
    return pd.DataFrame(rows)


def _verdict(row: pd.Series, second_best: float, cfg: ProjectConfig) -> tuple[list[str], str, list[str]]:
    """(signals, verdict, reasons) of one column given the best AUC among the other columns."""
    lk, d = cfg.leakage, cfg.data
    auc, strong, weak, signals = row["single_variable_auc"], [], [], []
    if auc >= lk.dominant_auc or (auc >= lk.dominant_margin_min_auc and auc - second_best >= lk.dominant_margin):
        signals.append("a")
        strong.append(
            f"alone it ranks leads with ROC-AUC {auc:.3f} (best other variable: {second_best:.3f}), "
            "too good for something known before the sales contact"
        )
    elif auc >= lk.review_auc:
        signals.append("a")
        weak.append(f"alone it ranks leads with ROC-AUC {auc:.3f}: confirm it is known before the sales contact")
    if row["pure"]:
        signals.append("b")
        strong.append(f"a level nearly decides the outcome ({row['purest_level']})")
    if row["missing_auc"] >= lk.missing_auc and 0 < row["missing_share"] < 1:
        signals.append("c")
        weak.append(
            f"whether it is filled in predicts the outcome (ROC-AUC {row['missing_auc']:.3f}): "
            "it may be filled in during or after the contact"
        )
    if row["stems"]:
        signals.append("d")
        words = ", ".join(f"'{s}'" for s in row["stems"])
        if auc >= lk.name_auc:
            strong.append(
                f"its name reads like an outcome or sales-contact field ({words}) and it predicts strongly (ROC-AUC {auc:.3f})"
            )
        else:
            weak.append(f"its name reads like an outcome or sales-contact field ({words})")
    if row["variable"] in d.post_contact:
        signals.append("e")
        if d.use_post_contact_fields:
            weak.append(
                "the configuration lists it as known only after the sales contact (data.post_contact) "
                "and allows such fields (data.use_post_contact_fields)"
            )
        else:
            strong.append("the configuration lists it as known only after the sales contact (data.post_contact)")
    verdict = "excluded" if strong else "review" if weak else "ok"
    return signals, verdict, strong + weak


def leakage_audit(X: pd.DataFrame, y: pd.Series | np.ndarray, cfg: ProjectConfig, cv: object) -> pd.DataFrame:
    """One row per configured column: ``variable``, ``label``, ``single_variable_auc``
    (out of fold over ``cv``), ``missing_share``, ``missing_auc``, ``purest_level``,
    ``signals`` (letters a-e of the module docstring), ``verdict``, ``reason`` (plain
    English) and ``allowed`` (named in ``data.allow_leaky``). Worst verdicts first."""
    target = np.asarray(y).astype(int)
    ev = _evidence(cfg, X, target, cv)
    aucs = ev["single_variable_auc"].to_numpy()
    out = []
    for i, row in ev.iterrows():
        others = np.delete(aucs, i)
        signals, verdict, reasons = _verdict(row, float(others.max()) if len(others) else 0.5, cfg)
        allowed = row["variable"] in cfg.data.allow_leaky
        if allowed and verdict == "excluded":
            reasons.append("kept anyway: named in data.allow_leaky")
        out.append(
            {
                **row.drop(["pure", "stems"]).to_dict(),
                "signals": ",".join(signals),
                "verdict": verdict,
                "reason": "; ".join(reasons) or "no sign of information from after the sales contact",
                "allowed": allowed,
            }
        )
    audit = pd.DataFrame(out, columns=COLUMNS)
    audit["_order"] = audit["verdict"].map({v: i for i, v in enumerate(VERDICTS)})
    return (
        audit.sort_values(["_order", "single_variable_auc"], ascending=[True, False]).drop(columns="_order").reset_index(drop=True)
    )


def blocked_variables(cfg: ProjectConfig, audit: pd.DataFrame) -> list[str]:
    """Columns the audit excluded and the configuration does not allow, plus the derived
    features (``features.products`` / ``ratios``) built from any of them."""
    excluded = audit.loc[audit["verdict"].eq("excluded"), "variable"]
    raw = [c for c in excluded if c not in cfg.data.allow_leaky]
    derived = [
        name for kind in (cfg.features.products, cfg.features.ratios) for name, (a, b) in kind.items() if a in raw or b in raw
    ]
    return [*raw, *derived]


def model_columns_after_audit(cfg: ProjectConfig, audit: pd.DataFrame) -> list[str]:
    """The configured model columns (``data.model_columns``) the audit leaves in."""
    blocked = set(blocked_variables(cfg, audit))
    return [c for c in cfg.data.model_columns if c not in blocked]


def audited_features(cfg: ProjectConfig, audit: pd.DataFrame) -> list[str]:
    """Model columns and derived features the audit leaves in (notebook 06's candidates)."""
    blocked = set(blocked_variables(cfg, audit))
    derived = [*cfg.features.products, *cfg.features.ratios]
    return [*model_columns_after_audit(cfg, audit), *(f for f in derived if f not in blocked)]


def apply_audit(decision: pd.DataFrame, cfg: ProjectConfig, audit: pd.DataFrame) -> pd.DataFrame:
    """Notebook 06's keep/drop table with every blocked variable dropped (added when absent)
    and the audit's warning added to the reason of ``review`` variables that are kept."""
    t = decision.set_index("variable")
    why = dict(zip(audit["variable"], audit["reason"], strict=True))
    for v in blocked_variables(cfg, audit):
        t.loc[v, ["keep", "reason"]] = [False, f"excluded by the leakage audit: {why.get(v, 'built from an excluded variable')}"]
    for v in audit.loc[audit["verdict"].eq("review"), "variable"]:
        if v in t.index and bool(t.loc[v, "keep"]):
            t.loc[v, "reason"] = f"{t.loc[v, 'reason']}; leakage audit, review: {why[v]}"
    t["keep"] = t["keep"].astype(bool)
    return t.reset_index()


def audit_summary(audit: pd.DataFrame) -> str:
    """The audit in plain words with its table (markdown), for the model card and reports."""
    counts = audit["verdict"].value_counts()
    excluded = audit[audit["verdict"].eq("excluded")]
    review = audit[audit["verdict"].eq("review")]
    lines = [
        f"The leakage audit checked {len(audit)} variables for information that is only known after the "
        "sales contact (status tags, call durations, quality grades): such fields make a model look far "
        "better in validation than it can be when a new lead must be prioritised."
    ]
    if len(excluded):
        kept = excluded.loc[excluded["allowed"], "variable"].tolist()
        lines.append(
            f"{counts.get('excluded', 0)} variable(s) were excluded from every model: "
            f"{', '.join(excluded['variable'])}"
            + (f" (kept anyway because the configuration allows them: {', '.join(kept)})" if kept else "")
            + "."
        )
    if len(review):
        lines.append(
            f"{len(review)} variable(s) need review (confirm they are known before the sales contact): "
            f"{', '.join(review['variable'])}."
        )
    if not len(excluded) and not len(review):
        lines.append("No variable showed a sign of such information.")
    table = ["| variable | single-variable ROC-AUC | missing | verdict | reason |", "|---|---|---|---|---|"]
    for r in audit[audit["verdict"].ne("ok")].itertuples():
        table.append(f"| {r.variable} | {r.single_variable_auc:.3f} | {r.missing_share:.0%} | {r.verdict} | {r.reason} |")
    return " ".join(lines) + ("\n\n" + "\n".join(table) if len(table) > 2 else "") + "\n"
