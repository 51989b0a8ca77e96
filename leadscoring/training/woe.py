"""Weights of evidence and information value per variable, and the points table they
suggest (a data-driven starting point for marketing's rules).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from leadscoring.features.encoding import MISSING_LEVEL
from leadscoring.formats import count, percent

#: Columns of a points table (see :mod:`leadscoring.training.rules`).
RULE_COLUMNS = ["variable", "kind", "level", "lower", "upper", "points", "rationale"]


def level_text(s: pd.Series, yes_no: bool) -> pd.Series:
    """Levels as text for the points table: yes/no as "Yes"/"No", missing as "Missing"."""
    if yes_no:
        return s.map({1.0: "Yes", 0.0: "No"}).astype(object).where(s.notna(), MISSING_LEVEL)
    return s.astype(object).where(s.notna(), MISSING_LEVEL).astype(str)


def _bin_edges(s: pd.Series, bins: int) -> list[float]:
    qs = s.dropna().quantile(np.linspace(0, 1, bins + 1)).to_numpy()
    inner = sorted(set(float(round(q, 2)) for q in qs[1:-1]))
    return [-math.inf, *inner, math.inf]


def woe_table(X: pd.DataFrame, y: pd.Series, yes_no: Sequence[str] = (), bins: int = 4) -> pd.DataFrame:
    """Weight of evidence per level / quantile range, with 0.5 smoothing.

    WoE = ln(share of converters in the level / share of non-converters); the information
    value of a variable is the sum of (share_pos - share_neg) * WoE over its levels.
    """
    y = pd.Series(np.asarray(y), index=X.index)
    pos, neg = float(y.sum()), float((1 - y).sum())
    numeric = [c for c in X.columns if c not in yes_no and pd.api.types.is_numeric_dtype(X[c])]
    rows = []
    for col in X.columns:
        s = X[col]
        if col in numeric:
            edges = _bin_edges(s, bins)
            cut = pd.cut(s, edges, right=False)
            groups = [(f"[{iv.left:g}, {iv.right:g})", "range", iv.left, iv.right, cut == iv) for iv in cut.cat.categories]
            groups.append((MISSING_LEVEL, "range", np.nan, np.nan, s.isna()))
        else:
            text = level_text(s, col in yes_no)
            groups = [(lvl, "level", np.nan, np.nan, text == lvl) for lvl in sorted(text.unique())]
        for label, kind, lo, hi, mask in groups:
            n = int(mask.sum())
            if n == 0:
                continue
            p = float(y[mask].sum())
            sp, sn = (p + 0.5) / (pos + 0.5), (n - p + 0.5) / (neg + 0.5)
            woe = math.log(sp / sn)
            rows.append(
                {
                    "variable": col,
                    "kind": kind,
                    "level": label if kind == "level" or label == MISSING_LEVEL else np.nan,
                    "bin": label,
                    "lower": lo,
                    "upper": hi,
                    "leads": n,
                    "conversion_rate": p / n,
                    "woe": woe,
                    "iv_part": (sp - sn) * woe,
                }
            )
    return pd.DataFrame(rows)


def information_value(woe: pd.DataFrame) -> pd.Series:
    return woe.groupby("variable")["iv_part"].sum().sort_values(ascending=False).rename("information_value")


def propose_rules(
    X: pd.DataFrame,
    y: pd.Series,
    yes_no: Sequence[str] = (),
    bins: int = 4,
    scale: float = 10.0,
    min_points: int = 1,
    min_leads: int = 20,
) -> pd.DataFrame:
    """Points = round(scale × WoE) per level/range. Levels with fewer than ``min_leads``
    training leads get no rule (too little evidence), nor do rows below ``min_points``."""
    woe = woe_table(X, y, yes_no=yes_no, bins=bins)
    woe["points"] = (woe["woe"] * scale).round()
    woe = woe[(woe["points"].abs() >= min_points) & (woe["leads"] >= min_leads)]
    woe["rationale"] = [f"{count(r.leads)} leads, {percent(r.conversion_rate)} converted" for r in woe.itertuples()]
    return woe[RULE_COLUMNS].reset_index(drop=True)
