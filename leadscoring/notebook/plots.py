"""Figures for the notebooks and reports: every one titled and labelled, saved as PNG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns
from sklearn.metrics import precision_recall_curve, roc_curve

from leadscoring.formats import percent
from leadscoring.ingest.quality import conversion_by_bins
from leadscoring.training.evaluation import calibration_table, gains_table

sns.set_theme(style="whitegrid", context="notebook")


def conversion_bar(table: pd.DataFrame, col: str, base_rate: float, ax: plt.Axes | None = None) -> plt.Figure:
    """Horizontal bars of conversion rate per level, with the base rate as a line."""
    ax = ax or plt.subplots(figsize=(7, max(2.5, 0.35 * len(table))))[1]
    sns.barplot(data=table, y=table[col].astype(str), x="conversion_rate", ax=ax, color="#4C72B0")
    ax.axvline(base_rate, color="#C44E52", ls="--", label=f"base rate {percent(base_rate)}")
    for i, r in enumerate(table.itertuples()):
        ax.text(r.conversion_rate, i, f" {r.leads}", va="center", fontsize=8)
    ax.set(title=f"Conversion rate by {col} (bar labels: leads)", xlabel="conversion rate", ylabel=col)
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(loc="lower right")
    return ax.figure


def numeric_by_target(
    df: pd.DataFrame, col: str, target: str, ax: plt.Axes | None = None, labels: Mapping[str, str] | None = None
) -> plt.Figure:
    """Distribution of a numeric column for converted vs not converted leads (the column named
    by its label in ``labels``, ``data.labels``)."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    name = (labels or {}).get(col, col)
    data = df[[col, target]].dropna()
    outcome = data[target].map({1: "converted", 0: "not converted"}).rename("outcome")
    sns.histplot(
        x=data[col],
        hue=outcome,
        hue_order=["converted", "not converted"],
        stat="density",
        common_norm=False,
        element="step",
        ax=ax,
        bins=30,
    )
    ax.set(title=f"{name}: converted vs not", xlabel=name, ylabel="density")
    return ax.figure


def _curve(df: pd.DataFrame, col: str, target: str, bins: int) -> pd.DataFrame:
    """Conversion per decile of ``col`` (per value when it has at most ``bins`` values)."""
    s = df[col]
    if not s.notna().any():
        return pd.DataFrame({"range": [], "conversion_rate": []})
    if s.nunique() <= bins:
        t = df.groupby(s, dropna=True)[target].mean().rename("conversion_rate").reset_index()
        t["range"] = [f"{v:g}" for v in t[col]]
        if s.isna().any():
            t.loc[len(t)] = {"range": "Missing", "conversion_rate": float(df.loc[s.isna(), target].mean())}
        return t[["range", "conversion_rate"]]
    return conversion_by_bins(df, col, target, bins).rename(columns={col: "range"})[["range", "conversion_rate"]]


def conversion_curves(
    df: pd.DataFrame, cols: Sequence[str], target: str, labels: Mapping[str, str] | None = None, bins: int = 10, per_row: int = 3
) -> plt.Figure:
    """One panel per numeric column: conversion rate per decile of the column (per value for a
    column with few values; tied values such as many zeros share one range; missing last),
    with the base rate as a line."""
    labels = labels or {}
    base = float(df[target].mean())
    rows = -(-len(cols) // per_row)
    fig, axes = plt.subplots(rows, min(per_row, len(cols)), figsize=(4.6 * min(per_row, len(cols)), 3.9 * rows), squeeze=False)
    for ax, col in zip(axes.flat, cols, strict=False):
        t = _curve(df, col, target, bins)
        ax.plot(range(len(t)), t["conversion_rate"], marker="o", color="#4C72B0")
        ax.axhline(base, color="#C44E52", ls="--", lw=1, label=f"base rate {percent(base)}")
        ax.set_xticks(range(len(t)), t["range"].astype(str), rotation=60, ha="right", fontsize=7)
        ax.set(title=labels.get(col, col), xlabel="range (deciles) or value", ylabel="conversion rate")
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.legend(loc="upper left", fontsize=7)
    for ax in list(axes.flat)[len(cols) :]:
        ax.set_visible(False)
    fig.suptitle("Conversion rate by decile of each behavioural feature")
    fig.tight_layout()
    return fig


def correlation_heatmap(
    df: pd.DataFrame, title: str = "Spearman correlation", labels: Mapping[str, str] | None = None
) -> plt.Figure:
    """Spearman correlations between the columns of ``df``, each named by its label in ``labels``."""
    fig, ax = plt.subplots(figsize=(7, 5.5))
    corr = df.rename(columns=dict(labels or {})).corr(method="spearman")
    sns.heatmap(corr, annot=True, fmt=".2f", cmap="vlag", center=0, ax=ax, cbar_kws={"label": "rho"})
    ax.set(title=title)
    return fig


def roc_pr_curves(y: Sequence[int], scores: Mapping[str, Sequence[float]]) -> plt.Figure:
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        prec, rec, _ = precision_recall_curve(y, s)
        a.plot(fpr, tpr, label=name)
        b.plot(rec, prec, label=name)
    a.plot([0, 1], [0, 1], "k:", label="random")
    b.axhline(np.mean(y), color="k", ls=":", label="random")
    a.set(title="ROC curve (validation split)", xlabel="false positive rate", ylabel="true positive rate")
    b.set(title="Precision-recall curve (validation split)", xlabel="recall", ylabel="precision")
    a.legend(), b.legend()
    return fig


def gains_lift(y: Sequence[int], scores: Mapping[str, Sequence[float]], groups: int = 10) -> plt.Figure:
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, s in scores.items():
        g = gains_table(y, s, groups)
        a.plot([0, *g["cum_leads_share"]], [0, *g["gain"]], marker="o", label=name)
        b.plot(g["group"], g["lift"], marker="o", label=name)
    a.plot([0, 1], [0, 1], "k:", label="random")
    b.axhline(1, color="k", ls=":", label="random")
    a.set(title="Cumulative gains", xlabel="share of leads called (best first)", ylabel="share of conversions captured")
    b.set(title="Lift by decile", xlabel="decile (1 = best scored)", ylabel="lift over base rate")
    a.legend(), b.legend()
    return fig


def reliability(y: Sequence[int], probs: Mapping[str, Sequence[float]], bins: int = 10) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, p in probs.items():
        t = calibration_table(y, p, bins)
        ax.plot(t["predicted"], t["observed"], marker="o", label=name)
    ax.plot([0, 1], [0, 1], "k:", label="perfect calibration")
    ax.set(
        title="Reliability: predicted vs observed conversion",
        xlabel="mean predicted probability",
        ylabel="observed conversion rate",
    )
    ax.legend()
    return fig


def bar_importance(
    table: pd.DataFrame,
    value: str,
    label: str = "variable",
    title: str = "",
    xlabel: str = "",
    labels: Mapping[str, str] | None = None,
) -> plt.Figure:
    """Horizontal bars of ``value`` per row of ``table``, each named by ``label``'s cell (its
    label in ``labels``, ``data.labels``, when it has one)."""
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.32 * len(table))))
    names = table[label].astype(str).map(lambda v: (labels or {}).get(v, v))
    sns.barplot(x=table[value].to_numpy(), y=names.to_numpy(), ax=ax, color="#55A868")
    ax.set(title=title or value, xlabel=xlabel or value, ylabel="")
    return fig


def scores_by_segment(
    segment_names: Sequence[str], scores: Sequence[float], order: Sequence[str], cuts: Sequence[tuple[str, int]]
) -> plt.Figure:
    """Box plot of the score per segment (one row each, in ``order``; dots: the leads far from
    their segment's usual scores), with the bucket thresholds ``cuts`` ((name, min_score),
    highest first) as dashed lines; right of each box, its leads in the top bucket."""
    seg = np.asarray(segment_names, dtype=object).astype(str)
    s = np.asarray(scores, dtype=float)
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.55 * len(order)))
    new_api = tuple(int(v) for v in matplotlib.__version__.split(".")[:2]) >= (3, 10)  # `vert` deprecated in 3.11
    horizontal = {"orientation": "horizontal"} if new_api else {"vert": False}
    ax.boxplot([s[seg == name] for name in order], widths=0.6, flierprops={"markersize": 3, "alpha": 0.5}, **horizontal)
    ax.set_yticks(range(1, len(order) + 1), [str(name) for name in order])
    ax.set_ylim(len(order) + 0.5, -0.2)  # first segment on top, a free strip above it for the threshold names
    top_name, top_min = cuts[0]
    for name, low in cuts[:-1]:
        ax.axvline(low, color="#C44E52", ls="--", lw=1)
        ax.text(low, 0.05, f" {name} ≥ {low}", color="#C44E52", fontsize=8, va="center")
    for i, name in enumerate(order, start=1):
        ax.text(101, i, f"{int((s[seg == name] >= top_min).sum()):,} {top_name}", va="center", fontsize=8)
    ax.set_xlim(0, 112)
    ax.set(title=f"Score by segment (right: leads in {top_name})", xlabel="score (0-100)", ylabel="")
    fig.tight_layout()
    return fig
