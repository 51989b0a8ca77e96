"""Scoring new leads: probability, 0-100 score, bucket, action, segment, reasons.

:class:`Scorer` holds the verified models, loaded once; ``score_columns``/``score_frame``
score validated leads in memory (the service, notebook 10, the batch engines in
:mod:`leadscoring.serving.batch`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscoring.artifacts import SCORE_MODEL, SEGMENT_MODEL, load_model
from leadscoring.config import Bucket, ProjectConfig
from leadscoring.features.columns import ColumnBatch, as_frame
from leadscoring.serving.fast import ProbabilityFunction, as_batch, segment_numbers, shared_steps
from leadscoring.serving.fast import enabled as fast_paths_enabled
from leadscoring.training.explain import prepare, top_factors
from leadscoring.training.pipeline import final_estimator, transform_steps


def to_score(probability: Sequence[float] | np.ndarray) -> np.ndarray:
    """Integer 0-100 score = round(100 × probability) (half away from zero)."""
    p = np.clip(np.asarray(probability, dtype=float), 0.0, 1.0)
    return np.floor(p * 100.0 + 0.5).astype(int)


def assign_buckets(scores: Sequence[int] | np.ndarray, buckets: Sequence[Bucket]) -> tuple[np.ndarray, np.ndarray]:
    """Bucket name and recommended action per score (first bucket whose min_score is reached)."""
    s = np.asarray(scores)
    names = np.full(len(s), buckets[-1].name, dtype=object)
    actions = np.full(len(s), buckets[-1].action, dtype=object)
    for b in reversed(buckets[:-1]):
        hit = s >= b.min_score
        names[hit], actions[hit] = b.name, b.action
    return names, actions


class Scorer:
    """The verified scoring model (and optional segment model), loaded once."""

    def __init__(self, cfg: ProjectConfig, model: Any, manifest: dict[str, Any],
                 segmenter: Any | None = None, segment_manifest: dict[str, Any] | None = None,
                 models_dir: Path | None = None, fast: bool | None = None) -> None:
        self.cfg = cfg
        self.models_dir = models_dir
        self.model = model
        self.manifest = manifest
        self.segmenter = segmenter
        self.segment_manifest = segment_manifest or {}
        #: Speed shortcuts (:mod:`leadscoring.serving.fast`) on or off; same results either way.
        self.fast = fast_paths_enabled() if fast is None else fast
        self.probability = ProbabilityFunction(model.steps[-1][1]) if self.fast else None
        # Leading steps identical in both models (cleaning, derived features) run once per call.
        encode_at = [n for n, _ in model.steps].index("encode")
        seg_features = getattr(segmenter, "features_", None)
        self._shared = 0
        if self.fast and seg_features is not None:
            self._shared = min(shared_steps(model, seg_features), encode_at)

    @classmethod
    def load(cls, cfg: ProjectConfig, models_dir: str | os.PathLike[str] | None = None,
             with_segments: bool = True) -> Scorer:
        folder = Path(models_dir) if models_dir is not None else cfg.path("models_dir")
        model, manifest = load_model(folder / SCORE_MODEL)
        seg, seg_manifest = None, None
        if with_segments and (folder / SEGMENT_MODEL).is_file():
            seg, seg_manifest = load_model(folder / SEGMENT_MODEL)
        return cls(cfg, model, manifest, seg, seg_manifest, folder)

    def limit_threads(self, n: int) -> Scorer:
        """Predict with at most ``n`` threads. The service uses 1: a call scores one or a
        few leads, where waking a thread team costs more than it saves; scale with workers."""
        est = final_estimator(self.model)
        if hasattr(est, "n_jobs"):
            est.set_params(n_jobs=n)
        return self

    @property
    def version(self) -> str:
        return str(self.manifest.get("sha256", "unknown"))[:12]

    def score_columns(self, X: pd.DataFrame | ColumnBatch, *, factors: bool = True) -> dict[str, np.ndarray]:
        """Score validated leads; returns the output columns as arrays (the preparation
        steps run once and serve both the probability and the reasons)."""
        id_col = self.cfg.data.id_column
        n_factors = self.cfg.scoring.top_factors if factors else 0
        if self.fast:
            X = as_batch(X)
            shared = transform_steps(self.model, X, stop=self._shared)
            prepared, encoded = prepare(self.model, shared, skip=self._shared)
            dmatrix = self.probability.matrix(encoded) if n_factors > 0 else None  # shared with the reasons
            proba = self.probability(encoded, dmatrix)
        else:  # the plain scikit-learn calls the shortcuts replace
            X = as_frame(X)
            prepared, encoded = prepare(self.model, X)
            dmatrix = None
            proba = np.asarray(self.model.predict_proba(X)[:, 1], dtype=np.float64)
        score = to_score(proba)
        bucket, action = assign_buckets(score, self.cfg.scoring.buckets)
        out = {id_col: np.asarray(X[id_col], dtype=object), "probability": np.round(proba, 6), "score": score,
               "bucket": bucket, "recommended_action": action}
        if self.segmenter is not None:
            out["segment"] = (self.segmenter.name(segment_numbers(self.segmenter, shared, skip=self._shared))
                              if self.fast else self.segmenter.segment_names(X))
        if n_factors > 0:
            out["top_factors"] = np.array(top_factors(self.model, X, n_factors, prepared, encoded, dmatrix), dtype=object)
        return out

    def score_frame(self, leads: pd.DataFrame, *, factors: bool = True) -> pd.DataFrame:
        """Score validated leads (as returned by ``validate_leads``/``read_leads``)."""
        X = leads.drop(columns=[self.cfg.data.target_column], errors="ignore")
        return pd.DataFrame(self.score_columns(X, factors=factors))
