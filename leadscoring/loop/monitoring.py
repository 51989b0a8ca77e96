"""Drift (population stability index) and A/B lift with a confidence interval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

PSI_WATCH, PSI_ALERT = 0.1, 0.25


def psi(expected: Sequence[Any], actual: Sequence[Any], *, numeric: bool, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index of ``actual`` against ``expected``.

    Numeric: decile bins of ``expected`` (missing values are a bin of their own);
    categorical: the levels of ``expected``, unseen levels pooled as one more bin.
    PSI = Σ (a - e) · ln(a / e) over bins, shares floored at ``eps``.
    """
    e, a = pd.Series(expected), pd.Series(actual)
    if numeric:
        e, a = pd.to_numeric(e, errors="coerce"), pd.to_numeric(a, errors="coerce")
        edges = np.unique(np.nanquantile(e.dropna(), np.linspace(0, 1, bins + 1))) if e.notna().any() else np.array([])
        inner = edges[1:-1]

        def share(s: pd.Series) -> np.ndarray:
            idx = np.where(s.isna(), len(inner) + 1, np.searchsorted(inner, s.to_numpy(), side="right"))
            return np.bincount(idx.astype(int), minlength=len(inner) + 2) / max(len(s), 1)
    else:
        levels = list(e.astype(object).where(e.notna(), "Missing").astype(str).unique())

        def share(s: pd.Series) -> np.ndarray:
            t = s.astype(object).where(s.notna(), "Missing").astype(str)
            counts = t.value_counts()
            known = np.array([counts.get(lv, 0) for lv in levels], dtype=float)
            return np.append(known, counts.sum() - known.sum()) / max(len(s), 1)

    pe, pa = np.maximum(share(e), eps), np.maximum(share(a), eps)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def drift_level(value: float) -> str:
    return "alert" if value >= PSI_ALERT else ("watch" if value >= PSI_WATCH else "stable")


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    scores: tuple[Sequence[float], Sequence[float]] | None = None,
) -> pd.DataFrame:
    """PSI per variable (and of the score) between reference (training) and current leads."""
    rows = []
    for col in [*numeric, *categorical]:
        if col in reference.columns and col in current.columns:
            v = psi(reference[col], current[col], numeric=col in numeric)
            rows.append({"variable": col, "psi": v, "level": drift_level(v)})
    if scores is not None:
        v = psi(scores[0], scores[1], numeric=True)
        rows.append({"variable": "score", "psi": v, "level": drift_level(v)})
    return pd.DataFrame(rows).sort_values("psi", ascending=False).reset_index(drop=True)


def ab_lift(
    control_conversions: int, control_n: int, treatment_conversions: int, treatment_n: int, confidence: float = 0.95
) -> dict[str, float]:
    """Conversion lift of a treatment over a control group.

    Returns both rates, the absolute difference with its Wald interval, and the relative
    lift (treatment / control - 1) with a log-ratio (Katz) interval.
    """
    if min(control_n, treatment_n) <= 0:
        raise ValueError("both groups need at least one lead")
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    pc, pt = control_conversions / control_n, treatment_conversions / treatment_n
    se = math.sqrt(pc * (1 - pc) / control_n + pt * (1 - pt) / treatment_n)
    out = {
        "control_rate": pc,
        "treatment_rate": pt,
        "difference": pt - pc,
        "difference_low": pt - pc - z * se,
        "difference_high": pt - pc + z * se,
    }
    if control_conversions > 0 and treatment_conversions > 0:
        rr = pt / pc
        se_log = math.sqrt(1 / treatment_conversions - 1 / treatment_n + 1 / control_conversions - 1 / control_n)
        out.update(lift=rr - 1, lift_low=rr * math.exp(-z * se_log) - 1, lift_high=rr * math.exp(z * se_log) - 1)
    else:
        out.update(lift=float("nan"), lift_low=float("nan"), lift_high=float("nan"))
    return out
