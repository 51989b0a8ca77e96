"""Data-quality report and exploratory tables (notebooks 02 and 03)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscoring.config import ProjectConfig


def _role(cfg: ProjectConfig, col: str) -> str:
    roles = cfg.data.columns
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
    placeholders = set(cfg.data.missing_values)
    rows = []
    n = len(df)
    for col in df.columns:
        s = df[col]
        role = _role(cfg, col)
        text = not pd.api.types.is_numeric_dtype(s)
        ph = int(s.isin(placeholders).sum()) if text else 0
        missing = int(s.isna().sum())
        valid = s[s.notna() & ~s.isin(placeholders)] if text else s.dropna()
        row = {
            "column": col, "role": role, "dtype": str(s.dtype), "missing": missing,
            "missing_pct": round(100 * missing / n, 2), "placeholders": ph,
            "unknown_pct": round(100 * (missing + ph) / n, 2), "distinct": int(valid.nunique()),
            "constant": bool(valid.nunique() <= 1), "rare_levels": 0, "outliers": 0,
            "spelling_variants": "", "min": np.nan, "max": np.nan,
        }
        if role in ("categorical", "yes_no"):
            share = valid.value_counts() / n
            row["rare_levels"] = int((share < cfg.cleaning.rare_min_share).sum())
            row["spelling_variants"] = "; ".join("/".join(g) for g in spelling_variants(valid))
        elif role == "numeric":
            q1, q3 = valid.quantile([0.25, 0.75])
            iqr = q3 - q1
            row["outliers"] = int(((valid < q1 - 3 * iqr) | (valid > q3 + 3 * iqr)).sum())
            row["min"], row["max"] = float(valid.min()), float(valid.max())
        rows.append(row)
    return pd.DataFrame(rows)


def quality_findings(report: pd.DataFrame) -> list[str]:
    """Plain-language findings from :func:`quality_report`, most important first."""
    out = []
    for r in report.itertuples():
        if r.role in ("id", "target"):
            continue
        if r.constant:
            out.append(f"{r.column}: constant ({r.distinct} distinct value) - dropped by the cleaner")
        if r.unknown_pct >= 30:
            out.append(f"{r.column}: {r.unknown_pct:.1f}% unknown ({r.missing} empty, {r.placeholders} placeholder)"
                       " - kept, with 'Missing' as its own level / a missing indicator")
        elif r.placeholders:
            out.append(f"{r.column}: {r.placeholders} placeholder values mean 'missing'")
        if r.spelling_variants:
            out.append(f"{r.column}: spellings differing only by case ({r.spelling_variants}) - merged")
        if r.rare_levels:
            out.append(f"{r.column}: {r.rare_levels} rare levels - grouped as 'Other'")
        if r.outliers:
            out.append(f"{r.column}: {r.outliers} outliers beyond 3 IQR (max {r.max:g}) - clipped at the 99th percentile")
    return out


def conversion_by_level(df: pd.DataFrame, col: str, target: str, min_leads: int = 1) -> pd.DataFrame:
    """Leads, share and conversion rate per level of a categorical column (missing shown)."""
    key = df[col].astype(object).where(df[col].notna(), "Missing")
    out = df.groupby(key, dropna=False)[target].agg(leads="size", conversion_rate="mean")
    out["share"] = out["leads"] / len(df)
    out = out[out["leads"] >= min_leads].sort_values("leads", ascending=False)
    return out.rename_axis(col).reset_index()


def conversion_by_bins(df: pd.DataFrame, col: str, target: str, bins: int = 5) -> pd.DataFrame:
    """Conversion rate per quantile bin of a numeric column, in bin order (missing last)."""
    s = df[col]
    cut = pd.qcut(s, bins, duplicates="drop")
    out = df.groupby(cut, observed=True)[target].agg(leads="size", conversion_rate="mean")
    out.index = out.index.astype(str)
    if s.isna().any():
        out.loc["Missing"] = [int(s.isna().sum()), float(df.loc[s.isna(), target].mean())]
    out["leads"] = out["leads"].astype(int)
    return out.rename_axis(col).reset_index()

