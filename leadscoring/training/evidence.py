"""What the training leads say about each variable, for the reasons' evidence
(:func:`leadscoring.training.reasons.build_reason_book`): conversion rates per level, where
numbers stand and how their ranges converted, and which variables are fit or engagement."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from leadscoring.config import ProjectConfig

#: Quantile grid (per mille) of numeric variables and group contributions.
GRID = np.linspace(0.0, 1.0, 1001)


def variable_groups(cfg: ProjectConfig, variables: Sequence[str]) -> dict[str, list[str]]:
    """Model variables per group: a column listed in ``data.fit_columns`` or
    ``data.engagement_columns``; a derived feature goes with its sources (engagement first)."""
    fit, eng = set(cfg.model_data.fit_columns), set(cfg.model_data.engagement_columns)
    sources = {name: set(pair) for kind in (cfg.features.products, cfg.features.ratios) for name, pair in kind.items()}
    groups: dict[str, list[str]] = {"fit": [], "engagement": []}
    for v in variables:
        src = sources.get(v, {v})
        if src & eng:
            groups["engagement"].append(v)
        elif src & fit:
            groups["fit"].append(v)
    return groups


def numeric_profile(values: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    known = ~np.isnan(values)
    v, t = values[known], y[known]
    q = np.quantile(v, GRID) if len(v) else np.zeros(len(GRID))
    edges = np.unique(np.quantile(v, np.linspace(0, 1, 11))) if len(v) else np.array([0.0])
    bins = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, max(len(edges) - 2, 0))
    n_bins = max(len(edges) - 1, 1)
    leads = np.bincount(bins, minlength=n_bins).astype(float)
    conv = np.bincount(bins, weights=t, minlength=n_bins)
    rates = np.divide(conv, leads, out=np.zeros_like(conv), where=leads > 0)
    return {"quantiles": q.tolist(), "edges": edges.tolist(), "rates": rates.tolist(), "leads": leads.tolist()}


def level_profile(levels: pd.Series, y: np.ndarray) -> dict[str, list[float]]:
    stats = pd.DataFrame({"level": levels.to_numpy(), "y": y}).groupby("level", sort=False)["y"].agg(["mean", "size"])
    return {str(k): [float(r["mean"]), float(r["size"])] for k, r in stats.iterrows()}
