"""Scoring new leads: probability, 0-100 score, bucket, action, grade, fit and engagement
scores, segment, reasons, previous score and trend, experiment group (with an experiment,
:mod:`leadscoring.serving.experiment`), model version and time.

:class:`Scorer` holds the verified models, loaded once; ``score_columns``/``score_frame``
score validated leads in memory (the service, notebook 10, the batch engines in
:mod:`leadscoring.serving.batch`). Every path gets the same fields from here, as declared
in :mod:`leadscoring.scored_lead` (:data:`SCORE_FIELDS`); only their representation differs:
``reasons`` is a list of ``{variable, label, value, effect, evidence}`` per lead (API,
parquet) or one readable line (:func:`~leadscoring.training.explanations.reason_text`: CSV, CRM
payload).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from leadscoring.artifacts import SCORE_MODEL, SEGMENT_MODEL, load_model
from leadscoring.config import Bucket, ProjectConfig
from leadscoring.events.engine import add_event_features, scoring_files
from leadscoring.features.columns import ColumnBatch, as_frame
from leadscoring.formats import percent
from leadscoring.scored_lead import OPTIONAL_INT_FIELDS as OPTIONAL_INT_FIELDS  # the fields, declared once
from leadscoring.scored_lead import SCORE_FIELDS as SCORE_FIELDS
from leadscoring.serving.experiment import GROUP_FIELD, check_groups, experiment_groups
from leadscoring.serving.fast import ProbabilityFunction, as_batch, segment_numbers, shared_steps
from leadscoring.serving.fast import enabled as fast_paths_enabled
from leadscoring.serving.history import ScoreHistory, trends
from leadscoring.training.explanations import ReasonBook, contribution_matrix, prepare, shown_values
from leadscoring.training.grades import assign_grades, grade_definition
from leadscoring.training.pipeline import columns_read, final_estimator, input_missing_shares, transform_steps

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from leadscoring.events.live import LiveEvents


def previous_scores_of(cfg: ProjectConfig) -> ScoreHistory | None:
    """Where the leads' previous scores come from: the score history, or None when the ids are
    row numbers (``data.id_from_row_number``): lead 1 of today's file is not lead 1 of the
    export, so every trend is ``new``. The one rule of both engines."""
    if cfg.data.id_from_row_number:
        log.info("ids are row numbers (data.id_from_row_number): every trend is 'new'")
        return None
    return ScoreHistory(cfg.path("score_history"))


def utc_now() -> str:
    """The scoring time: UTC, ISO 8601, seconds (``2026-11-23T10:15:00Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


#: The score fields that come only with reasons on (``score_columns(reasons=True)``): they
#: need each lead's contributions, most of a scoring's time.
WITH_REASONS = frozenset({"reasons", "fit_score", "engagement_score"})


class Scorer:
    """The verified scoring model (and optional segment model), loaded once."""

    def __init__(
        self,
        cfg: ProjectConfig,
        model: Any,
        manifest: dict[str, Any],
        segmenter: Any | None = None,
        segment_manifest: dict[str, Any] | None = None,
        models_dir: Path | None = None,
        fast: bool | None = None,
    ) -> None:
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
        #: Evidence per variable and fit/engagement grouping, learned with the model (none
        #: for a model saved before 0.4: reasons then carry no evidence, no fit/engagement).
        self.book = (
            ReasonBook.from_dict(manifest["reasons"])
            if "reasons" in manifest
            else ReasonBook(base_rate=float("nan"), labels={}, levels={}, numeric={}, yes_no=[], groups={})
        )
        self.book.labels = {**self.book.labels, **cfg.model_data.labels}  # relabelling needs no retraining
        #: Grade thresholds: learned with the model (shares, capacity) or the configured ranges.
        self.grades = grade_definition(cfg.scoring.grades, manifest)
        #: Where each lead's previous score comes from (None: no history, every trend "new").
        self.history: ScoreHistory | None = None
        #: The events in memory for per-lead lookups (the service); None: the event files.
        self.live_events: LiveEvents | None = None

    @classmethod
    def load(
        cls,
        cfg: ProjectConfig,
        models_dir: str | os.PathLike[str] | None = None,
        with_segments: bool = True,
        check_experiment: bool = True,
    ) -> Scorer:
        """The verified models of ``models_dir`` (default ``paths.models_dir``), with the score
        history for previous scores (none when the ids are row numbers: a row number names
        a lead only within its file). With an experiment configured, ``check_experiment``
        first refuses settings that would move already-scored leads to another group
        (:func:`~leadscoring.serving.experiment.check_groups`; a worker of a job already
        checked skips it)."""
        if check_experiment:
            check_groups(cfg.experiment, cfg.path("score_history"))
        folder = Path(models_dir) if models_dir is not None else cfg.path("models_dir")
        model, manifest = load_model(folder / SCORE_MODEL)
        seg, seg_manifest = None, None
        if with_segments and (folder / SEGMENT_MODEL).is_file():
            seg, seg_manifest = load_model(folder / SEGMENT_MODEL)
        scorer = cls(cfg, model, manifest, seg, seg_manifest, folder)
        scorer.history = previous_scores_of(cfg)
        return scorer

    def limit_threads(self, n: int) -> Scorer:
        """Predict with at most ``n`` threads. The service uses 1: a call scores one or a
        few leads, where waking a thread team costs more than it saves; scale with workers."""
        est = final_estimator(self.model)
        if hasattr(est, "n_jobs"):
            est.set_params(n_jobs=n)
        return self

    def input_gaps(self, X: pd.DataFrame, min_leads: int = 50, empty: float = 0.9, was: float = 0.5) -> list[str]:
        """Variables the model reads that are missing for at least ``empty`` of the leads ``X``
        (validated) where they were missing for at most ``was`` of the training leads (the
        manifest's ``input_missing``): a file that lacks a field the model learned from, each
        as one sentence. None with fewer than ``min_leads`` leads or a model saved without them."""
        trained = self.manifest.get("input_missing") or {}
        if not trained or len(X) < min_leads:
            return []
        labels = self.cfg.model_data.labels
        derived = self.cfg.features.sources  # computed from two columns: those are named, not it
        # The behavioural features come from the events, never from the file: not checked here.
        behaviour = [c for c in self.cfg.event_columns if c not in X.columns]
        now = input_missing_shares(self.model, X.assign(**dict.fromkeys(behaviour, np.nan)))
        return [
            f"{labels.get(v, v)} is empty for {percent(now[v])} of these leads, against {percent(trained[v])} of the "
            "training leads: the model reads it as missing for them; check that the file carries it"
            for v in now
            if v in trained and v not in derived and v not in behaviour and now[v] >= empty and trained[v] <= was
        ]

    @cached_property
    def unread_columns(self) -> list[str]:
        """Configured columns that neither model reads (fields the audit kept out, variables
        not selected): a file of new leads may lack them (``validate_leads(may_lack=...)``)."""
        read = columns_read(self.model, self.cfg)
        if self.segmenter is not None:
            read |= columns_read(self.segmenter.features_, self.cfg)
        return [c for c in self.cfg.data.columns.all if c not in read]  # (event features are never in a file)

    @property
    def version(self) -> str:
        return str(self.manifest.get("sha256", "unknown"))[:12]

    def score_columns(
        self, X: pd.DataFrame | ColumnBatch, *, reasons: bool = True, scored_at: str | None = None
    ) -> dict[str, np.ndarray]:
        """Score validated leads; returns the output columns (:data:`SCORE_FIELDS`) as arrays.
        The preparation steps run once and serve the probability, the reasons and the
        fit/engagement scores. ``reasons=False`` leaves out those three (faster);
        ``scored_at`` (default: now) is the same for every lead of one job."""
        id_col = self.cfg.data.id_column
        scored_at = scored_at or utc_now()
        X = self.with_event_features(X, scored_at)
        if self.fast:
            X = as_batch(X)
            shared = transform_steps(self.model, X, stop=self._shared)
            prepared, encoded = prepare(self.model, shared, skip=self._shared)
            dmatrix = self.probability.matrix(encoded) if reasons else None  # shared with the reasons
            proba = self.probability(encoded, dmatrix)
        else:  # the plain scikit-learn calls the shortcuts replace
            X = as_frame(X)
            prepared, encoded = prepare(self.model, X)
            dmatrix = None
            proba = np.asarray(self.model.predict_proba(X)[:, 1], dtype=np.float64)
        ids = np.asarray(X[id_col], dtype=object)
        score = to_score(proba)
        bucket, action = assign_buckets(score, self.cfg.scoring.buckets)
        out = {
            id_col: ids,
            "probability": np.round(proba, 6),
            "score": score,
            "bucket": bucket,
            "recommended_action": action,
            "grade": assign_grades(score, self.grades),
        }
        if reasons:
            contrib, variables = contribution_matrix(self.model, prepared, encoded, dmatrix)
            out.update(self.book.group_scores(contrib, variables))
        if self.segmenter is not None:
            out["segment"] = (
                self.segmenter.name(segment_numbers(self.segmenter, shared, skip=self._shared))
                if self.fast
                else self.segmenter.segment_names(X)
            )
        if reasons:
            values = {v: np.asarray(prepared[v]) for v in variables if v in prepared.columns}
            shown = shown_values(self.model, X, values)  # a clipped number as the lead has it
            n = self.cfg.scoring.reasons
            per_lead = np.empty(len(ids), dtype=object)  # one list per lead (never broadcast as 2-D)
            for i, r in enumerate(self.book.reasons(contrib, variables, values, n.positive, n.negative, shown)):
                per_lead[i] = r
            out["reasons"] = per_lead
        previous = self.history.lookup(ids) if self.history is not None else np.full(len(ids), np.nan)
        out["previous_score"] = previous
        out["trend"] = trends(score, previous, self.cfg.scoring.trend_points)
        if self.cfg.experiment.enabled:
            out[GROUP_FIELD] = experiment_groups(ids, self.cfg.experiment)
        out["model_version"] = np.full(len(ids), self.version, dtype=object)
        out["scored_at"] = np.full(len(ids), scored_at, dtype=object)
        return out

    def with_event_features(self, X: pd.DataFrame | ColumnBatch, scored_at: str) -> pd.DataFrame | ColumnBatch:
        """``X`` with its behavioural features computed from the events when the configuration
        has some and ``X`` lacks them: as of ``scored_at`` (or each lead's cut-off column,
        ``events.score_at: cutoff_column``): looked up in :attr:`live_events` when set (the
        service), else read from the event store, or ``events.path`` without one."""
        ev = self.cfg.events
        if ev is None or all(c in X.columns for c in self.cfg.event_columns):
            return X
        at = None if ev.score_at == "cutoff_column" else scored_at
        if self.live_events is not None:
            return self.live_events.add_features(as_frame(X), at=at)
        return add_event_features(self.cfg, as_frame(X), at=at, files=scoring_files(self.cfg))

    def score_frame(self, leads: pd.DataFrame, *, reasons: bool = True, scored_at: str | None = None) -> pd.DataFrame:
        """Score validated leads (as returned by ``validate_leads``/``read_leads``); ``reasons``
        holds a list per lead."""
        X = leads.drop(columns=[self.cfg.data.target_column], errors="ignore")
        return pd.DataFrame(self.score_columns(X, reasons=reasons, scored_at=scored_at))
