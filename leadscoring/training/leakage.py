"""Leakage audit (notebook 06): fields filled in after the sales contact, found before any
model sees them.

A status tag, the duration of the sales call, a quality grade entered by the sales team or
the fields of a won deal joined to the lead make a model look brilliant in validation and
useless when a new lead must be prioritised. :func:`leakage_audit` weighs, for every
configured column:

a. how far it alone ranks leads above the best column *not itself flagged* (out-of-fold
   ROC-AUC; flagged columns are removed and the rest compared again until nothing changes,
   so a block of leaks cannot mask itself);
b. whether a level nearly always converts and covers a material share of leads (a level
   that nearly never converts is noted, but is no sign by itself: honest variables have
   strong negative levels);
f. whether the rows where a mostly empty column is filled in nearly all converted (or
   nearly all did not), however sparse, given enough of them;
c. whether it is missing itself predicts the outcome;
g. whether it is filled in for (nearly) the same leads as a column excluded on other
   evidence: fields entered together with a post-contact field (a sales rep beside the
   call's duration) are entered at the same moment;
d. its name or label reads like an outcome, status, stage, tag, grade or call (unless
   qualified as earlier: "previous outcome");
e. the configuration lists it under ``data.post_contact``.

Strong evidence (a, b, f, g, e, or a name with strong ranking) makes a column ``excluded``;
weak evidence (a good but not dominant ranking, missingness, a name alone, a post-contact
field the configuration allows) makes it ``review``. Both stay out of every model unless the
configuration allows them (``data.allow_leaky``, or ``data.use_post_contact_fields`` for the
fields of ``data.post_contact``). Flagged columns filled in for the same leads are named as
one group. Thresholds live in the ``leakage`` section of the configuration.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

from leadscoring.config import LeakageConfig, ProjectConfig
from leadscoring.features.cleaning import LeadCleaner
from leadscoring.features.columns import as_frame
from leadscoring.features.encoding import MISSING_LEVEL, build_encoder
from leadscoring.formats import count, fixed, percent
from leadscoring.training.compare import out_of_fold

VERDICTS = ("excluded", "review", "ok")
COLUMNS = [
    "variable",
    "label",
    "single_variable_auc",
    "missing_share",
    "missing_auc",
    "purest_level",
    "signals",
    "group",
    "verdict",
    "reason",
    "allowed",
]


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC read in either direction over the scored leads (NaN: a lead no fold tested);
    0.5 when the score or the target is constant."""
    scored = ~np.isnan(score)
    y, score = y[scored], score[scored]
    if len(np.unique(y)) < 2 or len(np.unique(score)) < 2:
        return 0.5
    auc = float(roc_auc_score(y, score))
    return max(auc, 1.0 - auc)


def _role(cfg: ProjectConfig, col: str) -> str:
    roles = cfg.model_data.columns
    return "numeric" if col in roles.numeric else "categorical" if col in roles.categorical else "yes_no"


def single_variable_pipeline(cfg: ProjectConfig, col: str, n_rows: int) -> Pipeline:
    """The project's cleaning and encoding of one column, then a small model: a shallow tree
    for a number (any shape of relationship), a logistic regression over the levels otherwise."""
    role, d = _role(cfg, col), cfg.model_data
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
    return _auc(y, out_of_fold(single_variable_pipeline(cfg, col, len(X)), X[[col]], y, cv))


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


def _purest_level(levels: pd.Series, y: np.ndarray, rate: float, min_share: float) -> tuple[str, str]:
    """The largest level that nearly always converts (``positive``: ≥ 1 - rate, when the
    overall rate is not itself that high) and the largest that nearly never does
    (``negative``: ≤ rate, at most half the overall rate), each covering ``min_share`` of
    leads; '' when none."""
    base = float(y.mean())
    stats = pd.DataFrame({"level": levels.to_numpy(), "y": y}).dropna().groupby("level")["y"].agg(["mean", "size"])
    stats["share"] = stats["size"] / len(y)
    stats = stats[stats["share"] >= min_share].sort_values("share", ascending=False)
    low = stats[(stats["mean"] <= rate) & (base > 2 * rate)]
    high = stats[(stats["mean"] >= 1 - rate) & (1 - base > 2 * rate)]

    def told(t: pd.DataFrame) -> str:
        return f"{t.index[0]}: {percent(t['share'].iloc[0])} of leads convert at {percent(t['mean'].iloc[0], 1)}" if len(t) else ""

    return told(high), told(low)


def _filled_purity(missing: np.ndarray, y: np.ndarray, rate: float, min_rows: int) -> str:
    """For a column filled in for some leads only: '' or what makes its filled-in rows
    nearly pure (at least ``min_rows`` of them converting at ≥ 1 - rate or ≤ rate, where the
    overall rate leaves room for that to mean something)."""
    filled = ~missing
    n = int(filled.sum())
    if n < min_rows or n == len(y):
        return ""
    base, rate_filled = float(y.mean()), float(y[filled].mean())
    if (rate_filled >= 1 - rate and 1 - base > 2 * rate) or (rate_filled <= rate and base > 2 * rate):
        return (
            f"filled in for {count(n)} leads ({percent(n / len(y), 1)}), of which {percent(rate_filled, 1)} converted "
            f"(all leads: {percent(base, 1)})"
        )
    return ""


def normalised_name(text: str) -> str:
    """Lower-case words without accents: ``"Call Duration (s)"`` → ``"call duration s"``,
    ``"leadStatus"`` → ``"lead status"``."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(text))
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


#: Units a name may carry beside a context stem and still be nothing but that stem.
_UNITS = frozenset({"s", "sec", "secs", "seconds", "m", "min", "mins", "minutes", "h", "hours", "ms", "segundos", "minutos"})


def outcome_like_stems(name: str, leakage: LeakageConfig) -> list[str]:
    """Stems of ``leakage.name_stems`` the name reads like: short ones (< 5 letters: ``tag``,
    ``won``) as whole words (or plural), longer ones anywhere in the name (``callduration`` →
    ``duration``). A stem after an ``earlier_qualifiers`` word (``previous outcome``, ``prior
    campaign result``, ``poutcome``: one-letter qualifiers only as the whole prefix) names an
    earlier event and does not count; nor does any stem in a name with a ``consent_words`` word
    (``do not call``, ``call opt-out``: a preference set before the contact) or an
    ``attribute_words`` word (``marital status``: who the lead is). A
    ``context_stems`` stem (``duration``) counts only as the whole name (a unit aside) or
    beside a ``contact_words`` word (``call duration``), not in ``page duration``."""
    norm = normalised_name(name)
    words, compact = set(norm.split()), norm.replace(" ", "")
    for c in map(normalised_name, [*leakage.consent_words, *leakage.attribute_words]):
        if c and (c in words if " " not in c else c in norm):
            return []
    quals = [q for q in (normalised_name(e).replace(" ", "") for e in leakage.earlier_qualifiers) if q]
    contexts = {normalised_name(c).replace(" ", "") for c in leakage.context_stems}
    contacts = [w for w in (normalised_name(c).replace(" ", "") for c in leakage.contact_words) if w]
    found = []
    for stem in leakage.name_stems:
        s = normalised_name(stem).replace(" ", "")
        if not s or not ((len(s) < 5 and (s in words or s + "s" in words)) or (len(s) >= 5 and s in compact)):
            continue
        prefix = compact[: compact.find(s)]
        if any(prefix == q or (len(q) > 1 and q in prefix) for q in quals):
            continue
        if s in contexts:
            rest = [w for w in norm.replace(s, " ").split() if w not in _UNITS]
            if rest and not any(c in compact for c in contacts):
                continue
        found.append(s)
    return found


def _evidence(cfg: ProjectConfig, X: pd.DataFrame, y: np.ndarray, cv: object) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Per configured column: single-variable AUC, missingness and its AUC, purest levels,
    filled-in purity, name; and each column's missing mask (for grouping)."""
    lk, d = cfg.leakage, cfg.model_data
    rows, masks = [], {}
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
        missing = masks[col] = clean.isna().to_numpy()
        positive, negative = _purest_level(
            _levels(clean, role, lk.pure_level_min_share), y, lk.pure_level_rate, lk.pure_level_min_share
        )
        label = d.labels.get(col, "")
        rows.append(
            {
                "variable": col,
                "label": label,
                "single_variable_auc": _single_auc(cfg, col, X, y, cv),
                "missing_share": float(missing.mean()),
                "missing_auc": _auc(y, missing.astype(float)),
                "purest_level": positive or negative,
                "positive_level": positive,
                "negative_level": negative,
                "filled": _filled_purity(missing, y, lk.filled_pure_rate, lk.filled_min_rows),
                "stems": outcome_like_stems(col, lk) or outcome_like_stems(label, lk),
            }
        )
    return pd.DataFrame(rows), masks


def _verdict(
    row: pd.Series, best_clean: float, cfg: ProjectConfig, filled_with: str | None = None
) -> tuple[list[str], str, list[str]]:
    """(signals, verdict, reasons) of one column given the best AUC among the columns not
    flagged (itself left out) and ``filled_with``, an excluded column filled in for the same
    leads (:func:`_filled_with`)."""
    lk, d = cfg.leakage, cfg.model_data
    auc, strong, weak, signals = row["single_variable_auc"], [], [], []
    if filled_with is not None:
        signals.append("g")
        strong.append(f"it is filled in for the same leads as {filled_with}, which the audit excluded: entered with it")
    if auc >= lk.dominant_auc or (auc >= lk.dominant_margin_min_auc and auc - best_clean >= lk.dominant_margin):
        signals.append("a")
        strong.append(
            f"alone it ranks leads with ROC-AUC {fixed(auc)} (best variable not flagged: {fixed(best_clean)}), "
            "too good for something known before the sales contact"
        )
    elif auc >= lk.review_auc:
        signals.append("a")
        weak.append(f"alone it ranks leads with ROC-AUC {fixed(auc)}: confirm it is known before the sales contact")
    if row["positive_level"]:
        signals.append("b")
        strong.append(f"a level nearly always converts ({row['positive_level']})")
    if row["filled"]:
        signals.append("f")
        strong.append(f"it is filled in almost only for leads of one outcome: {row['filled']}")
    if row["missing_auc"] >= lk.missing_auc and 0 < row["missing_share"] < 1:
        signals.append("c")
        weak.append(
            f"whether it is filled in predicts the outcome (ROC-AUC {fixed(row['missing_auc'])}): "
            "it may be filled in during or after the contact"
        )
    if row["stems"]:
        signals.append("d")
        words = ", ".join(f"'{s}'" for s in row["stems"])
        if auc >= lk.name_auc:
            strong.append(
                f"its name reads like an outcome or sales-contact field ({words}) and it predicts strongly (ROC-AUC {fixed(auc)})"
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
    if row["negative_level"] and (strong or weak):  # by itself an honest negative signal
        weak.append(f"a level nearly never converts ({row['negative_level']})")
    verdict = "excluded" if strong else "review" if weak else "ok"
    return signals, verdict, strong + weak


def _verdicts(ev: pd.DataFrame, masks: dict[str, np.ndarray], cfg: ProjectConfig) -> list[tuple[list[str], str, list[str]]]:
    """Each column's verdict against the best column not excluded, and beside the excluded
    columns filled in for the same leads: exclude, remove, compare again until the excluded
    set no longer grows (it only grows, so this ends)."""
    aucs = ev["single_variable_auc"].to_numpy()
    names = ev["variable"].tolist()
    flagged = np.zeros(len(ev), dtype=bool)
    partners: dict[int, str] = {}
    while True:
        out = []
        for i, row in ev.iterrows():
            clean = ~flagged
            clean[i] = False
            out.append(_verdict(row, float(aucs[clean].max()) if clean.any() else 0.5, cfg, partners.get(int(i))))
        now = np.array([v == "excluded" for _, v, _ in out])
        # partners: excluded on their own evidence (not only for a partner) and not let in by the configuration
        own = np.array([now[i] and i not in partners and not is_allowed(cfg, n) for i, n in enumerate(names)])
        found = _filled_with(names, masks, now, own, cfg.leakage.group_overlap)
        if (now <= flagged).all() and found.keys() <= partners.keys():
            return out
        flagged |= now
        partners |= found


#: A column must be empty for at least this share of leads to be part of a block filled in
#: together (a column filled in for 99 % of leads contains every sparser one).
MIN_EMPTY_SHARE = 0.1


def _filled_with(
    variables: Sequence[str], masks: dict[str, np.ndarray], excluded: np.ndarray, partners: np.ndarray, overlap: float
) -> dict[int, str]:
    """For each column not ``excluded`` that is empty for some leads: a ``partners`` column
    (excluded on its own evidence), also empty for some leads, filled in for nearly the same
    leads (shared filled rows over the union of both at least ``overlap``: one column filled
    for a superset of the other's leads is no match, and two nearly full columns are left
    alone, as in :func:`_groups`: they overlap whether or not they were entered together)."""
    out: dict[int, str] = {}
    sparse = np.array([MIN_EMPTY_SHARE <= masks[v].mean() < 1 for v in variables])
    for i, name in enumerate(variables):
        if excluded[i] or not sparse[i]:
            continue
        filled = ~masks[name]
        for j in np.flatnonzero(partners & sparse):
            other = ~masks[variables[j]]
            union = int((filled | other).sum())
            if union and (filled & other).sum() / union >= overlap:
                out[i] = variables[j]
                break
    return out


def _groups(variables: Sequence[str], masks: dict[str, np.ndarray], overlap: float) -> dict[str, str]:
    """Flagged columns filled in for the same leads: the sparser one's filled-in rows lie
    (nearly, ``overlap``) within the other's, as the fields of one joined record do. Each
    column of a group of two or more → 'filled in together: a, b, …'."""
    cols = [v for v in variables if MIN_EMPTY_SHARE <= masks[v].mean() < 1]  # a nearly full column joins no block
    parent = {c: c for c in cols}

    def root(c: str) -> str:
        while parent[c] != c:
            c = parent[c]
        return c

    for i, a in enumerate(cols):
        fa = ~masks[a]
        for b in cols[i + 1 :]:
            fb = ~masks[b]
            smaller = min(fa.sum(), fb.sum())
            if smaller and (fa & fb).sum() / smaller >= overlap:
                parent[root(b)] = root(a)
    members: dict[str, list[str]] = {}
    for c in cols:
        members.setdefault(root(c), []).append(c)
    return {c: "filled in together: " + ", ".join(m) for m in members.values() if len(m) > 1 for c in m}


def is_allowed(cfg: ProjectConfig, variable: str) -> bool:
    """Whether the configuration lets a flagged column into the models: named in
    ``data.allow_leaky``, or a ``data.post_contact`` field with ``use_post_contact_fields``."""
    d = cfg.model_data
    return variable in d.allow_leaky or (d.use_post_contact_fields and variable in d.post_contact)


def leakage_audit(X: pd.DataFrame, y: pd.Series | np.ndarray, cfg: ProjectConfig, cv: object) -> pd.DataFrame:
    """One row per configured column: ``variable``, ``label``, ``single_variable_auc``
    (out of fold over ``cv``, any folds: forward-chaining ones too), ``missing_share``,
    ``missing_auc``, ``purest_level``, ``signals`` (letters of the module docstring),
    ``group`` (flagged columns filled in together), ``verdict``, ``reason`` (plain English)
    and ``allowed`` (the configuration lets it into the models). Worst verdicts first."""
    target = np.asarray(y).astype(int)
    ev, masks = _evidence(cfg, X, target, cv)
    verdicts = _verdicts(ev, masks, cfg)
    flagged = [ev["variable"].iloc[i] for i, (_, v, _) in enumerate(verdicts) if v != "ok"]
    groups = _groups(flagged, masks, cfg.leakage.group_overlap)
    out = []
    for (_, row), (signals, verdict, reasons) in zip(ev.iterrows(), verdicts, strict=True):
        allowed = verdict != "ok" and is_allowed(cfg, row["variable"])
        if allowed and row["variable"] in cfg.data.allow_leaky:
            reasons.append("in the models all the same: the configuration allows it (data.allow_leaky)")
        elif verdict == "review" and not allowed:
            reasons.append("kept out of the models until the configuration allows it (data.allow_leaky)")
        out.append(
            {
                **row.drop(["positive_level", "negative_level", "filled", "stems"]).to_dict(),
                "signals": ",".join(signals),
                "group": groups.get(row["variable"], ""),
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
    """Columns the audit excluded or marked for review that the configuration does not
    allow, plus the derived features (``features.products`` / ``ratios``) built from any of them."""
    flagged = audit.loc[audit["verdict"].ne("ok"), "variable"]
    raw = [c for c in flagged if not is_allowed(cfg, c)]
    return [*raw, *cfg.features.built_from(raw)]


def kept_out_for_review(cfg: ProjectConfig, audit: pd.DataFrame) -> list[str]:
    """The variables of :func:`blocked_variables` kept out on weak evidence only (verdict
    ``review``, e.g. a name that reads like a status, and the derived features built from
    them and from no excluded column): out until someone confirms they are known before the
    sales contact, not shown to be post-contact."""
    review = [c for c in audit.loc[audit["verdict"].eq("review"), "variable"] if not is_allowed(cfg, c)]
    strong = [c for c in audit.loc[audit["verdict"].eq("excluded"), "variable"] if not is_allowed(cfg, c)]
    from_strong = set(cfg.features.built_from(strong))  # a feature also built from an excluded column is excluded
    return [*review, *(f for f in cfg.features.built_from(review) if f not in from_strong)]


def model_columns_after_audit(cfg: ProjectConfig, audit: pd.DataFrame) -> list[str]:
    """The configured model columns (``data.model_columns``) the audit leaves in."""
    blocked = set(blocked_variables(cfg, audit))
    return [c for c in cfg.model_data.model_columns if c not in blocked]


def audited_features(cfg: ProjectConfig, audit: pd.DataFrame) -> list[str]:
    """Model columns and derived features the audit leaves in (notebook 06's candidates)."""
    blocked = set(blocked_variables(cfg, audit))
    derived = [*cfg.features.products, *cfg.features.ratios]
    return [*model_columns_after_audit(cfg, audit), *(f for f in derived if f not in blocked)]


def apply_audit(decision: pd.DataFrame, cfg: ProjectConfig, audit: pd.DataFrame) -> pd.DataFrame:
    """Notebook 06's keep/drop table with every blocked variable dropped (added when absent)
    and the audit's warning added to the reason of flagged variables the configuration allows."""
    t = decision.set_index("variable")
    why = dict(zip(audit["variable"], audit["reason"], strict=True))
    verdict = dict(zip(audit["variable"], audit["verdict"], strict=True))
    for v in blocked_variables(cfg, audit):
        t.loc[v, ["keep", "reason"]] = [
            False,
            f"kept out by the leakage audit ({verdict[v]}): {why[v]}"
            if v in why
            else "built from a variable the leakage audit kept out",
        ]
    for v in audit.loc[audit["verdict"].ne("ok") & audit["allowed"], "variable"]:
        if v in t.index and bool(t.loc[v, "keep"]):
            t.loc[v, "reason"] = f"{t.loc[v, 'reason']}; leakage audit, {verdict[v]}: {why[v]}"
    t["keep"] = t["keep"].astype(bool)
    return t.reset_index()


def audit_summary(audit: pd.DataFrame) -> str:
    """The audit in plain words with its table (markdown), for the model card and reports:
    which flagged fields are out of the models, which are in and why, and the groups."""
    excluded = audit[audit["verdict"].eq("excluded")]
    review = audit[audit["verdict"].eq("review")]
    allowed = audit[audit["verdict"].ne("ok") & audit["allowed"]]
    lines = [
        f"The leakage audit checked {len(audit)} variables for information that is only known after the "
        "sales contact (status tags, call durations, quality grades, the fields of a won deal): such fields make a "
        "model look far better in validation than it can be when a new lead must be prioritised."
    ]
    if len(excluded):
        lines.append(f"{len(excluded)} variable(s) were excluded on strong evidence: {', '.join(excluded['variable'])}.")
    if len(review):
        lines.append(
            f"{len(review)} variable(s) showed weak evidence and need review (confirm they are known before the "
            f"sales contact): {', '.join(review['variable'])}."
        )
    out = audit[audit["verdict"].ne("ok") & ~audit["allowed"]]
    if len(out) and len(allowed):  # else every flagged variable is out, as the lines above say
        lines.append(f"Out of every model: {', '.join(out['variable'])}.")
    elif len(out):
        lines.append("All of them are out of every model.")
    if len(allowed):
        lines.append(f"In the models because the configuration allows them: {', '.join(allowed['variable'])}.")
    groups = [g for g in dict.fromkeys(audit.get("group", pd.Series(dtype=str)).fillna("")) if g]
    if groups:
        lines.append(
            "Fields filled in for the same leads, flagged as a block: " + "; ".join(g.split(": ", 1)[1] for g in groups) + "."
        )
    if not len(excluded) and not len(review):
        lines.append("No variable showed a sign of such information.")
    table = ["| variable | single-variable ROC-AUC | missing | verdict | in the models | reason |", "|---|---|---|---|---|---|"]
    for r in audit[audit["verdict"].ne("ok")].itertuples():
        table.append(
            f"| {r.variable} | {fixed(r.single_variable_auc)} | {percent(r.missing_share)} | {r.verdict} | "
            f"{'yes' if r.allowed else 'no'} | {r.reason} |"
        )
    return " ".join(lines) + ("\n\n" + "\n".join(table) if len(table) > 2 else "") + "\n"
