"""Unsupervised lead segmentation (KMeans) on what is known before a lead converts.

The target and the score are never clustering inputs: conversion and score are reported
per segment afterwards. Segments are relabelled by conversion rate (segment 1 converts
best) so names are stable across re-runs with the same seed.

"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, ClusterMixin, clone
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from leadscoring.config import ProjectConfig
from leadscoring.features.columns import as_frame
from leadscoring.features.encoding import build_encoder
from leadscoring.formats import fixed, number, percent
from leadscoring.training.pipeline import FIT_PROCESSES, numeric_feature_names, preparation_steps


def segmentation_columns(cfg: ProjectConfig, excluded: Iterable[str] = ()) -> list[str]:
    """Fit and engagement columns (every configured column when none are listed), plus derived
    features, without post-contact fields and without ``excluded`` (the variables the leakage
    audit blocks: a segment must not be told apart by what is filled in after the contact),
    nor a derived feature built from any of them."""
    out = {*cfg.data.post_contact, *excluded}
    cols = [c for c in (*cfg.model_data.fit_columns, *cfg.model_data.engagement_columns) if c not in out]
    if not cols:
        cols = [c for c in cfg.model_data.columns.all if c not in out]
    tainted = set(cfg.features.built_from(out))
    return [*cols, *(name for name in cfg.features.sources if name not in out and name not in tainted)]


#: Words of a column name that say "where the lead came from" (English, German, French,
#: Spanish, Portuguese, Italian, Dutch; analytics' utm_source and medium).
CHANNEL_WORDS = re.compile(
    r"source|channel|medium|origin|referr|campaign|utm|quelle|kanal|herkunft|canal|procedencia|fonte|origem|"
    r"provenance|provenienza|bron|kanaal",
    re.IGNORECASE,
)


#: The weakest trait worth naming: a numeric mean 0.2 standard deviations from all leads'
#: (a small effect), or a level's share 1.22 times its share among all leads (log 0.2).
MIN_TRAIT = 0.2


#: Below this silhouette the segments hold no substantial structure (Kaufman & Rousseeuw's
#: reading of the silhouette: under 0.25, none).
WEAK_SILHOUETTE = 0.25


def overlap_caution(k_table: pd.DataFrame | None, k: int | None = None) -> str:
    """A caution when the chosen segmentation (``k``, default the table's best silhouette) is
    weakly separated; "" otherwise or without a table."""
    if k_table is None or k_table.empty or "silhouette" not in k_table:
        return ""
    row = k_table.loc[k_table["k"] == k] if k is not None else k_table.nlargest(1, "silhouette")
    if row.empty or float(row["silhouette"].iloc[0]) >= WEAK_SILHOUETTE:
        return ""
    return (
        f"The segments overlap (silhouette {fixed(float(row['silhouette'].iloc[0]), 2)}, below {fixed(WEAK_SILHOUETTE, 2)}): "
        "read them as tendencies among the leads, not as separate groups; the score and grades, not the segments, "
        "say whom to call first."
    )


def channel_column(cfg: ProjectConfig) -> str | None:
    """The categorical column shown as "which channel brings each segment":
    ``segmentation.channel_column``, else the first configured categorical column named like
    a lead source or channel (:data:`CHANNEL_WORDS`), else the first categorical column
    (None: none)."""
    if cfg.segmentation.channel_column is not None:
        return cfg.segmentation.channel_column
    categorical = cfg.data.columns.categorical
    labels = cfg.model_data.labels
    named = [c for c in categorical if CHANNEL_WORDS.search(c) or CHANNEL_WORDS.search(labels.get(c, ""))]
    return (named or categorical or [None])[0]


def segment_features(cfg: ProjectConfig, excluded: Iterable[str] = ()) -> Pipeline:
    """Raw leads → scaled, encoded segmentation features (``excluded``: see
    :func:`segmentation_columns`)."""
    enc = build_encoder(
        numeric_feature_names(cfg),
        cfg.data.columns.categorical,
        cfg.data.columns.yes_no,
        rare_min_share=max(cfg.cleaning.rare_min_share, 0.03),
        scale=True,
    )
    return Pipeline([*preparation_steps(cfg, segmentation_columns(cfg, excluded)), ("encode", enc)])


#: KMeans fits here run one OpenMP thread each: on a few thousand leads a second thread saves
#: little, and when the machine is shared, OpenMP's waiting threads made the search for k
#: 7 times slower (40 s against 6 s measured on 5,800 leads, 2 cores, another job running).
ONE_THREAD = 1


def choose_k(Z: np.ndarray, k_range: tuple[int, int], seeds: Sequence[int], sample: int = 3000) -> pd.DataFrame:
    """Elbow (inertia), silhouette and stability (mean adjusted Rand index across seeds) per k."""
    rng = np.random.default_rng(0)
    idx = rng.choice(len(Z), size=min(sample, len(Z)), replace=False)
    ks = range(k_range[0], k_range[1] + 1)
    return pd.DataFrame(Parallel(n_jobs=FIT_PROCESSES)(delayed(_k_figures)(Z, k, seeds, idx) for k in ks))


def _k_figures(Z: np.ndarray, k: int, seeds: Sequence[int], idx: np.ndarray) -> dict[str, float]:
    """Inertia and silhouette of the first seed's solution with ``k`` segments, and its
    stability across ``seeds``."""
    with threadpool_limits(ONE_THREAD):
        labels = [KMeans(k, n_init=10, random_state=s).fit(Z) for s in seeds]
    ari = [adjusted_rand_score(a.labels_, b.labels_) for a, b in itertools.combinations(labels, 2)]
    return {
        "k": k,
        "inertia": float(labels[0].inertia_),
        "silhouette": float(silhouette_score(Z[idx], labels[0].labels_[idx])),
        "stability_ari": float(np.mean(ari)) if ari else 1.0,
    }


def pick_k(table: pd.DataFrame, min_stability: float = 0.8) -> int:
    """Highest silhouette among the stable solutions (ARI ≥ ``min_stability``); ties → smaller k."""
    stable = table[table["stability_ari"] >= min_stability]
    pool = stable if len(stable) else table
    best = pool.sort_values(["silhouette", "k"], ascending=[False, True]).iloc[0]
    return int(best["k"])


class LeadSegmenter(ClusterMixin, BaseEstimator):
    """KMeans on :func:`segment_features`; ``predict`` gives segment numbers 1..k ordered by
    training conversion rate (1 = best), ``segment_names`` their plain-language names.
    ``y`` (the outcome) only orders the segments; it is never a clustering input (without
    it, segments are ordered by size)."""

    def __init__(self, features: Pipeline, k: int = 4, seed: int = 0) -> None:
        self.features = features
        self.k = k
        self.seed = seed

    def fit(self, X: pd.DataFrame, y: Sequence[int] | None = None) -> LeadSegmenter:
        self.features_ = clone(self.features).fit(X)
        Z = self.features_.transform(X)
        with threadpool_limits(ONE_THREAD):
            self.kmeans_ = KMeans(self.k, n_init=10, random_state=self.seed).fit(Z)
        labels = pd.Series(self.kmeans_.labels_)
        rank = pd.Series(np.asarray(y, dtype=float)).groupby(labels).mean() if y is not None else labels.value_counts()
        order = rank.sort_values(ascending=False, kind="stable").index
        self.relabel_ = {int(old): new for new, old in enumerate(order, start=1)}
        self.labels_ = self.renumber(self.kmeans_.labels_)
        self.names_: dict[int, str] = {i: f"Segment {i}" for i in range(1, self.k + 1)}
        self.advice_: dict[int, str] = {}
        return self

    def renumber(self, clusters: np.ndarray) -> np.ndarray:
        """KMeans cluster indices → segment numbers (1 = best converting)."""
        lookup = np.array([self.relabel_[i] for i in range(len(self.relabel_))])
        return lookup[np.asarray(clusters, dtype=int)]

    def fit_predict(self, X: pd.DataFrame, y: Sequence[int] | None = None) -> np.ndarray:
        return self.fit(X, y).labels_

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Segment number per lead (the nearest KMeans centre)."""
        return self.renumber(self.kmeans_.predict(self.features_.transform(X)))

    def name(self, segments: np.ndarray) -> np.ndarray:
        return np.array([self.names_[s] for s in segments], dtype=object)

    def segment_names(self, X: pd.DataFrame) -> np.ndarray:
        return self.name(self.predict(X))

    def set_names(self, names: dict[int, str], advice: dict[int, str] | None = None) -> LeadSegmenter:
        self.names_ = {int(k): v for k, v in names.items()}
        self.advice_ = {int(k): v for k, v in (advice or {}).items()}
        return self


def profile_segments(
    prepared: pd.DataFrame,
    segment: Sequence[int],
    y: Sequence[int],
    score: Sequence[float] | None = None,
    categorical: Sequence[str] = (),
    labels: dict[str, str] | None = None,
    yes_no: Sequence[str] = (),
) -> pd.DataFrame:
    """Size, conversion, mean score and the most distinguishing traits of each segment.

    Numeric traits: standardised difference of the segment mean vs the base; categorical
    traits: the level most over-represented vs the base (ratio of shares, ≥ 5 % of the segment);
    a ``yes_no`` column (0/1) is measured as a numeric one and told as shares of yes
    ("high share with e-book download (45 % vs 32 %)"), not as means.
    ``labels`` gives plain-language variable names (default: the column names).
    """
    labels = labels or {}
    df = as_frame(prepared).reset_index(drop=True).copy()
    seg = pd.Series(np.asarray(segment), name="segment")
    yv = pd.Series(np.asarray(y, dtype=float))
    rows = []
    for s in sorted(seg.unique()):
        m = (seg == s).to_numpy()
        traits: list[tuple[float, str]] = []
        for col in df.columns:
            x = df[col]
            if col in categorical:
                base = x.fillna("Missing").value_counts(normalize=True)
                part = x[m].fillna("Missing").value_counts(normalize=True)
                ratio = (part / base).where(part >= 0.05).dropna()
                if len(ratio):
                    lvl = ratio.idxmax()
                    name = labels.get(col, col)
                    shares = f"{percent(part[lvl])} vs {percent(base[lvl])}"
                    traits.append((float(np.log(ratio.max())), f"{name} {lvl} ({shares})"))
            else:
                xs = pd.to_numeric(x, errors="coerce")
                sd = xs.std()
                if sd and not np.isnan(sd):
                    d = (xs[m].mean() - xs.mean()) / sd
                    name = labels.get(col, col)
                    if col in yes_no:
                        shares = f"{percent(xs[m].mean())} vs {percent(xs.mean())}"
                        traits.append((abs(float(d)), f"{'high' if d > 0 else 'low'} share with {name} ({shares})"))
                        continue
                    means = f"{number(xs[m].mean())} vs {number(xs.mean())}"
                    traits.append((abs(float(d)), f"{'high' if d > 0 else 'low'} {name} ({means})"))
        traits.sort(key=lambda t: -t[0])
        row: dict[str, Any] = {
            "segment": int(s),
            "leads": int(m.sum()),
            "share": float(m.mean()),
            "conversion_rate": float(yv[m].mean()),
        }
        if score is not None:
            row["mean_score"] = float(np.asarray(score, dtype=float)[m].mean())
        strong = [t for t in traits if t[0] >= MIN_TRAIT] or traits[:1]  # a 16 % vs 14 % gap tells a client nothing
        row["distinguishing"] = "; ".join(t[1] for t in strong[:4])
        rows.append(row)
    return pd.DataFrame(rows)


#: A segment's channel mix differs from all leads' by at least this much (total variation
#: distance: the share of its leads that would have to come from other channels) before the
#: advice speaks of its channels.
MIN_CHANNEL_GAP = 0.15


def channel_gaps(segments: Sequence[int] | np.ndarray, channels: Sequence[object] | pd.Series) -> dict[int, float]:
    """Per segment, how far its leads' channel mix is from all leads' (total variation
    distance, 0 to 1; missing channels count as one level)."""
    levels = pd.Series(np.asarray(channels, dtype=object)).fillna("Missing").astype(str)
    overall = levels.value_counts(normalize=True)
    mix = pd.crosstab(pd.Series(np.asarray(segments)), levels, normalize="index")
    return {int(s): float((mix.loc[s] - overall.reindex(mix.columns, fill_value=0)).abs().sum() / 2) for s in mix.index}


def name_segments(
    profile: pd.DataFrame,
    base_rate: float,
    high_ratio: float = 1.3,
    low_ratio: float = 0.7,
    *,
    top_bucket: str | None = None,
    channel_gaps: Mapping[int, float] | None = None,
) -> tuple[dict[int, str], dict[int, str]]:
    """Plain-language names and recommendations from conversion level and the top trait:
    "High-potential" at or above ``high_ratio`` × the base rate, "Low-potential" at or below
    ``low_ratio`` × (``segmentation.high_ratio`` / ``low_ratio`` in the configuration).
    ``top_bucket``: the name of the highest score bucket (``scoring.buckets``), which the
    advice names. ``channel_gaps`` (:func:`channel_gaps`): the advice speaks of a segment's
    channels only when its mix differs from all leads' by :data:`MIN_CHANNEL_GAP` (without
    them, as if it did)."""
    top = top_bucket or "in the top bucket"
    names, advice = {}, {}
    for r in profile.itertuples():
        ratio = r.conversion_rate / base_rate if base_rate else 1.0
        tier = "High-potential" if ratio >= high_ratio else ("Low-potential" if ratio <= low_ratio else "Average")
        trait = str(r.distinguishing).split(";")[0].split(" (")[0].strip()
        names[int(r.segment)] = f"{tier}: {trait}" if trait else tier
        own_channels = channel_gaps is None or channel_gaps.get(int(r.segment), 0.0) >= MIN_CHANNEL_GAP
        if tier == "High-potential":
            advice[int(r.segment)] = "Route to sales fast" + (
                "; protect the channels that bring these leads." if own_channels else "."
            )
        elif tier == "Average":
            advice[int(r.segment)] = f"Nurture with targeted content; call those the model scores {top}."
        else:
            advice[int(r.segment)] = "Automated marketing only" + (
                "; review spend on the channels that bring them." if own_channels else "."
            )
    return names, advice
