"""Data-quality report and exploratory tables (notebooks 02 and 03)."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd

from leadscoring.config import ProjectConfig
from leadscoring.formats import count, fixed, number, percent


def _role(cfg: ProjectConfig, col: str) -> str:
    roles = cfg.model_data.columns
    if col == cfg.data.id_column:
        return "id"
    if col == cfg.data.target_column:
        return "target"
    for name in ("numeric", "categorical", "yes_no"):
        if col in getattr(roles, name):
            return name
    return "other"


def spelling_variants(s: pd.Series) -> list[list[str]]:
    """Groups of levels that differ only by case or surrounding spaces (``google``/``Google``)."""
    levels = pd.Series(s.dropna().astype(str).unique())
    keys = levels.str.strip().str.casefold()
    return [sorted(g.tolist()) for _, g in levels.groupby(keys) if len(g) > 1]


def quality_report(df: pd.DataFrame, cfg: ProjectConfig) -> pd.DataFrame:
    """One row per column: role, type, missing %, placeholders, cardinality, rare levels,
    outliers (beyond 3 IQR from the quartiles), constant flag and spelling variants."""
    placeholders = {m.casefold() for m in cfg.data.missing_values}  # as the cleaner reads them: case and spaces aside
    rows = []
    n = len(df)
    for col in df.columns:
        s = df[col]
        role = _role(cfg, col)
        text = not pd.api.types.is_numeric_dtype(s)
        is_ph = s.notna() & s.astype(str).str.strip().str.casefold().isin(placeholders) if text else None
        ph = int(is_ph.sum()) if is_ph is not None else 0
        missing = int(s.isna().sum())
        valid = s[s.notna() & ~is_ph] if is_ph is not None else s.dropna()
        row = {
            "column": col,
            "role": role,
            "dtype": str(s.dtype),
            "missing": missing,
            "missing_pct": round(100 * missing / n, 2),
            "placeholders": ph,
            "unknown_pct": round(100 * (missing + ph) / n, 2),
            "distinct": int(valid.nunique()),
            "constant": bool(valid.nunique() <= 1),
            "rare_levels": 0,
            "outliers": 0,
            "spelling_variants": "",
            "min": np.nan,
            "max": np.nan,
        }
        if role in ("categorical", "yes_no"):
            share = valid.value_counts() / n
            row["rare_levels"] = int((share < cfg.cleaning.rare_min_share).sum()) if role == "categorical" else 0  # yes/no: 1/0
            row["spelling_variants"] = "; ".join("/".join(g) for g in spelling_variants(valid))
        elif role == "numeric":
            q1, q3 = valid.quantile([0.25, 0.75])
            iqr = q3 - q1
            row["outliers"] = int(((valid < q1 - 3 * iqr) | (valid > q3 + 3 * iqr)).sum())
            row["min"], row["max"] = float(valid.min()), float(valid.max())
        rows.append(row)
    return pd.DataFrame(rows)


def quality_findings(
    report: pd.DataFrame,
    labels: Mapping[str, str] | None = None,
    clip_quantile: float = 0.99,
    only: Collection[str] | None = None,
) -> list[str]:
    """Plain-language findings from :func:`quality_report`, most important first; a column is
    named by its label in ``labels`` (``data.labels``) when it has one; outliers are said to be
    clipped at ``clip_quantile`` (``cleaning.clip_quantile``; 1: not clipped). ``only``: the
    columns to speak of (e.g. those the model may read once the leakage audit has kept some
    out, whose treatment would be beside the point); default every column."""
    low, high = number(100 * (1 - clip_quantile)), number(100 * clip_quantile)
    clipped = f"clipped to percentiles {low} and {high}" if clip_quantile < 1 else "kept"  # as every numeric column
    labels = labels or {}
    out = []
    for r in report.itertuples():
        if r.role in ("id", "target") or (only is not None and r.column not in only):
            continue
        name = labels.get(r.column, r.column)
        if r.constant:
            out.append(f"{name}: constant ({r.distinct} distinct value) - dropped by the cleaner")
        if r.unknown_pct >= 30:
            out.append(
                f"{name}: {percent(r.unknown_pct / 100, 1)} unknown ({count(r.missing)} empty, {count(r.placeholders)} placeholder)"
                " - kept, with 'Missing' as its own level / a missing indicator"
            )
        elif r.placeholders:
            out.append(f"{name}: {_many(r.placeholders, 'placeholder value')} mean 'missing'")
        if isinstance(r.spelling_variants, str) and r.spelling_variants:  # a CSV read back has NaN for none
            out.append(f"{name}: spellings differing only by case ({r.spelling_variants}) - merged")
        if r.rare_levels:
            out.append(f"{name}: {_many(r.rare_levels, 'rare level')} - grouped as 'Other'")
        if r.outliers:
            out.append(f"{name}: {_many(r.outliers, 'outlier')} beyond 3 IQR (max {number(r.max)}) - {clipped}")
    return out


def _many(n: int, noun: str) -> str:
    """``1 outlier``, ``3 outliers`` (a count in the number style)."""
    return f"{count(n)} {noun}{'' if n == 1 else 's'}"


def conversion_by_level(df: pd.DataFrame, col: str, target: str, min_leads: int = 1) -> pd.DataFrame:
    """Leads, share and conversion rate per level of a categorical column (missing shown)."""
    key = df[col].astype(object).where(df[col].notna(), "Missing")
    out = df.groupby(key, dropna=False)[target].agg(leads="size", conversion_rate="mean")
    out["share"] = out["leads"] / len(df)
    out = out[out["leads"] >= min_leads].sort_values("leads", ascending=False)
    return out.rename_axis(col).reset_index()


def conversion_by_bins(df: pd.DataFrame, col: str, target: str, bins: int = 5) -> pd.DataFrame:
    """Conversion rate per quantile bin of a numeric column, in bin order (missing last); each
    bin named by the smallest and largest value in it (``1,200 to 1,850``, in the number style)."""
    s = df[col]
    cut = pd.qcut(s, bins, duplicates="drop")
    grouped = df.groupby(cut, observed=True)
    out = grouped[target].agg(leads="size", conversion_rate="mean")
    span = grouped[col].agg(["min", "max"])
    out.index = [
        number(lo) if number(lo) == number(hi) else f"{number(lo)} to {number(hi)}"
        for lo, hi in zip(span["min"], span["max"], strict=True)
    ]
    if s.isna().any():
        out.loc["Missing"] = [int(s.isna().sum()), float(df.loc[s.isna(), target].mean())]
    out["leads"] = out["leads"].astype(int)
    return out.rename_axis(col).reset_index()


def _groups(df: pd.DataFrame, col: str, target: str, numeric: bool, yes_no: bool) -> pd.DataFrame:
    """Levels (or quantile bins) of one column with leads and conversion rate: columns
    ``level``, ``leads``, ``conversion_rate``."""
    if numeric:
        if df[col].notna().sum() == 0:
            return pd.DataFrame(columns=["level", "leads", "conversion_rate"])
        t = conversion_by_bins(df, col, target)
    else:
        s = df[col].map({1.0: "yes", 0.0: "no"}) if yes_no else df[col]
        t = conversion_by_level(df.assign(**{col: s}), col, target)
    return t.rename(columns={col: "level"})[["level", "leads", "conversion_rate"]]


def variable_separation(df: pd.DataFrame, cfg: ProjectConfig, min_share: float = 0.02) -> pd.DataFrame:
    """How strongly each configured column separates conversion, computed from the data.

    One row per column present in ``df`` (cleaned leads with a 0/1 target): its role, the
    share of missing values, the best and the worst level (numeric columns: quantile bin)
    among those with at least ``min_share`` of the leads, and ``spread``, the difference of
    their conversion rates. Sorted by spread, largest first.
    """
    target = cfg.data.target_column
    roles = cfg.model_data.columns
    rows = []
    for col in [c for c in roles.all if c in df.columns]:
        numeric, yes_no = col in roles.numeric, col in roles.yes_no
        t = _groups(df, col, target, numeric, yes_no)
        t = t[t["leads"] >= max(1, min_share * len(df))]
        row = {
            "variable": col,
            "label": cfg.model_data.labels.get(col, col),
            "role": "numeric" if numeric else ("yes_no" if yes_no else "categorical"),
            "missing_share": float(df[col].isna().mean()),
            "levels": int(len(t)),
            "post_contact": col in cfg.data.post_contact,
            "spread": 0.0,
        }
        if len(t):
            best, worst = t.loc[t["conversion_rate"].idxmax()], t.loc[t["conversion_rate"].idxmin()]
            row.update(
                best_level=str(best["level"]),
                best_rate=float(best["conversion_rate"]),
                best_share=float(best["leads"] / len(df)),
                worst_level=str(worst["level"]),
                worst_rate=float(worst["conversion_rate"]),
                worst_share=float(worst["leads"] / len(df)),
                spread=float(best["conversion_rate"] - worst["conversion_rate"]),
            )
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.sort_values("spread", ascending=False, kind="stable").reset_index(drop=True) if len(out) else out


def eda_findings(df: pd.DataFrame, cfg: ProjectConfig, top: int = 3) -> list[str]:
    """Plain-language findings of the exploratory analysis, computed from the data (cleaned
    leads with a 0/1 target): the variables that separate conversion most, the direction
    of numeric ones, heavy missingness, near-constant yes/no answers, post-contact fields."""
    target = cfg.data.target_column
    base = float(df[target].mean())
    sep = variable_separation(df, cfg)
    out = [f"{count(len(df))} leads, base conversion rate {percent(base, 1)}."]
    if not len(sep):
        return out
    for r in sep.head(top).itertuples():
        if r.spread <= 0:
            continue
        what = "range" if r.role == "numeric" else "level"
        out.append(
            f"{r.label} separates leads by {fixed(100 * r.spread, 0)} percentage points: {what} {r.best_level} converts "
            f"{percent(r.best_rate)} ({percent(r.best_share)} of leads), {r.worst_level} {percent(r.worst_rate)}."
        )
    for col in [c for c in cfg.model_data.columns.numeric if c in df.columns]:
        x = pd.to_numeric(df[col], errors="coerce")
        if x.nunique() < 2:
            continue
        label = cfg.model_data.labels.get(col, col)
        outcomes = df.loc[x.notna(), target]
        if outcomes.nunique() < 2:  # no ranking to measure: every lead with a value has one outcome
            did = "converted" if outcomes.iloc[0] == 1 else "did not convert"
            out.append(
                f"{label} is filled in only for leads that {did} ({count(len(outcomes))} leads): "
                "a sign it is entered after the outcome."
            )
            continue
        rho = float(x.corr(df[target], method="spearman"))
        if abs(rho) >= 0.1:
            out.append(
                f"Higher {label} goes with {'more' if rho > 0 else 'less'} conversion (Spearman rho {fixed(rho, 2, signed=True)})."
            )
        else:
            out.append(f"{label} on its own hardly changes the conversion rate (Spearman rho {fixed(rho, 2, signed=True)}).")
    for r in sep[sep["missing_share"] >= 0.3].itertuples():
        miss = df[r.variable].isna()
        out.append(
            f"{r.label} is missing for {percent(r.missing_share)} of leads (they convert {percent(df.loc[miss, target].mean())}"
            f" vs {percent(df.loc[~miss, target].mean())}); missingness is kept as information."
        )
    flat = []
    for col in [c for c in cfg.model_data.columns.yes_no if c in df.columns]:
        share = df[col].value_counts(normalize=True)
        if len(share) and share.iloc[0] >= 0.95:
            flat.append(
                f"{cfg.model_data.labels.get(col, col)} ({percent(share.iloc[0])} '{'yes' if share.index[0] == 1 else 'no'}')"
            )
    if flat:
        out.append(f"Almost always the same answer, so little information: {', '.join(flat)}.")
    post = sep.head(top)
    for r in post[post["post_contact"]].itertuples():
        out.append(
            f"{r.label} is among the strongest variables but is configured as known only after the "
            "sales contact (data.post_contact): see the model card for what that means."
        )
    return out
