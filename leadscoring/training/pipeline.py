"""The one estimator from raw columns to probability.

Every model is one scikit-learn pipeline: cleaning, derived features, variable
selection, encoding, (optional) resampling and the classifier travel together, so
cross-validation refits all of them inside each fold and nothing leaks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from imblearn.pipeline import Pipeline as ImbPipeline
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline
from xgboost import DMatrix, XGBClassifier

from leadscoring.config import ProjectConfig
from leadscoring.features.cleaning import LeadCleaner
from leadscoring.features.derived import ColumnSelector, LeadFeatures
from leadscoring.features.encoding import build_encoder

FIT_PROCESSES = -1
"""Processes for independent fits (cross-validation folds, search candidates, KMeans
solutions): one per core. Each fit keeps one thread (``n_jobs=1`` in the classifiers), so
the fits, not the threads, share the machine; results do not depend on it."""


def preparation_steps(cfg: ProjectConfig, features: Sequence[str] | None = None) -> list[tuple[str, Any]]:
    """Cleaning, derived features and variable selection, configured from ``cfg``."""
    d = cfg.model_data
    roles = d.columns
    allowed = set(d.model_columns)
    cleaner = LeadCleaner(
        numeric=[c for c in roles.numeric if c in allowed],
        categorical=[c for c in roles.categorical if c in allowed],
        yes_no=[c for c in roles.yes_no if c in allowed],
        missing_values=list(d.missing_values),
        yes_values=list(d.yes_values),
        clip_quantile=cfg.cleaning.clip_quantile,
    )
    derived = LeadFeatures(
        products={k: tuple(v) for k, v in cfg.features.products.items()},
        ratios={k: tuple(v) for k, v in cfg.features.ratios.items()},
    )
    return [("clean", cleaner), ("features", derived), ("select", ColumnSelector(features))]


def numeric_feature_names(cfg: ProjectConfig) -> list[str]:
    """Numeric inputs of the encoder: numeric columns plus derived features."""
    return [*cfg.model_data.columns.numeric, *cfg.features.products, *cfg.features.ratios]


def build_pipeline(
    cfg: ProjectConfig,
    estimator: BaseEstimator,
    *,
    features: Sequence[str] | None = None,
    scale: bool = True,
    sampler: BaseEstimator | None = None,
) -> Pipeline:
    """Raw columns → probability. With a ``sampler`` an imbalanced-learn pipeline is used,
    which resamples only when fitting (inside each CV training fold), never when scoring."""
    encoder = build_encoder(
        numeric_feature_names(cfg),
        cfg.data.columns.categorical,
        cfg.data.columns.yes_no,
        rare_min_share=cfg.cleaning.rare_min_share,
        scale=scale,
    )
    steps = [*preparation_steps(cfg, features), ("encode", encoder)]
    if sampler is not None:
        return ImbPipeline([*steps, ("sample", sampler), ("model", estimator)])
    return Pipeline([*steps, ("model", estimator)])


def xgb_classifier(seed: int, **params: Any) -> XGBClassifier:
    base = dict(
        n_estimators=300,
        learning_rate=0.05,
        max_depth=4,
        subsample=0.8,
        colsample_bytree=0.8,
        min_child_weight=1,
        tree_method="hist",
        eval_metric="logloss",
        n_jobs=1,  # one thread per fit: cross-validation runs many small fits (see all_cores for scoring)
        random_state=seed,
    )
    base.update(params)
    return XGBClassifier(**base)


def all_cores(model: Pipeline) -> Pipeline:
    """The fitted ``model`` set to predict with every core of the machine it runs on
    (``n_jobs=None``): no thread count is baked into a saved model. Training keeps one
    thread per fit, which is faster for the many small fits of cross-validation and does not
    collapse when the machine is shared. Predictions do not depend on the thread count.
    The service sets one thread per worker (``Scorer.limit_threads``)."""
    est = final_estimator(model)
    if hasattr(est, "n_jobs"):
        est.set_params(n_jobs=None)
    return model


def transform_steps(pipeline: Pipeline, X: Any, start: int = 0, stop: int | None = None) -> Any:
    """``pipeline[start:stop].transform(X)``, calling each fitted step directly.

    Same result as slicing the pipeline, without building a new Pipeline and running its
    per-call checks (which cost more than the steps themselves for one lead).
    """
    for _, step in pipeline.steps[start:stop]:
        if step is not None and step != "passthrough":
            X = step.transform(X)
    return X


def columns_read(model: Pipeline, cfg: ProjectConfig) -> set[str]:
    """The export's columns a fitted pipeline's variables come from: each selected column,
    and both columns of each selected derived feature (``features.products``/``ratios``)."""
    sources = cfg.features.sources
    return {c for v in model.named_steps["select"].feature_names_out_ for c in sources.get(v, (v,))}


def input_missing_shares(model: Pipeline, X: Any) -> dict[str, float]:
    """Per variable the model reads (after cleaning, derived features and selection): the
    share of ``X``'s leads where it is missing. Stored with the model from its training
    leads, it tells a file of new leads that lacks a field apart from the leads it learned on."""
    stop = [name for name, _ in model.steps].index("encode")
    prepared = transform_steps(model, X, stop=stop)
    return {str(c): float(np.mean(pd.isna(np.asarray(prepared[c], dtype=object)))) for c in prepared.columns}


def booster_matrix(est: XGBClassifier, X: np.ndarray) -> DMatrix:
    """XGBoost's input for ``X`` as ``est`` reads it (its missing-value marker and threads)."""
    return DMatrix(X, missing=est.missing, nthread=est.n_jobs or -1)


def final_estimator(model: Pipeline) -> Any:
    """The fitted classifier inside a (possibly calibrated, possibly resampling) pipeline."""
    est = model.steps[-1][1]
    if isinstance(est, CalibratedClassifierCV):
        est = est.calibrated_classifiers_[0].estimator
    if isinstance(est, (Pipeline, ImbPipeline)):
        est = est.steps[-1][1]
    return est
