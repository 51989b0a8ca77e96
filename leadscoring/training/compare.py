"""Choosing a model by cross-validation: the candidate families (each with one way of
handling class imbalance), bounded tuning and probability calibration.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import Pipeline as ImbPipeline
from imblearn.under_sampling import RandomUnderSampler
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, RandomizedSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import Pipeline

from leadscoring.config import ProjectConfig
from leadscoring.training.pipeline import build_pipeline, xgb_classifier

log = logging.getLogger(__name__)


#: How well a score ranks leads (any scale, e.g. the rules' 0-100 points).
RANKING_SCORING = {"roc_auc": "roc_auc", "average_precision": "average_precision"}
#: Ranking plus the quality of probabilities (models with ``predict_proba``).
SCORING = {**RANKING_SCORING, "brier": "neg_brier_score"}


@dataclass
class Candidate:
    name: str
    pipeline: Pipeline
    imbalance: str
    notes: str = ""


def candidate_models(cfg: ProjectConfig, features: Sequence[str] | None, pos_weight: float, fast: bool = False) -> list[Candidate]:
    """The model families compared in notebook 07, each with imbalance handled one way."""
    seed = cfg.modelling.seed
    trees = 100 if fast else 300
    lr = dict(max_iter=2000, C=1.0)
    return [
        Candidate(
            "logistic_plain",
            build_pipeline(cfg, LogisticRegression(**lr), features=features),
            "none",
            "reference: plain logistic regression",
        ),
        Candidate(
            "logistic_weighted",
            build_pipeline(cfg, LogisticRegression(class_weight="balanced", **lr), features=features),
            "class weights",
        ),
        Candidate(
            "logistic_smote",
            build_pipeline(cfg, LogisticRegression(**lr), features=features, sampler=SMOTE(random_state=seed)),
            "SMOTE in fold",
        ),
        Candidate(
            "random_forest_weighted",
            build_pipeline(
                cfg,
                RandomForestClassifier(
                    n_estimators=trees, min_samples_leaf=3, class_weight="balanced_subsample", n_jobs=2, random_state=seed
                ),
                features=features,
                scale=False,
            ),
            "class weights",
        ),
        Candidate(
            "xgboost_weighted",
            build_pipeline(
                cfg, xgb_classifier(seed, n_estimators=trees, scale_pos_weight=pos_weight), features=features, scale=False
            ),
            "scale_pos_weight",
        ),
        Candidate(
            "xgboost_undersampled",
            build_pipeline(
                cfg,
                xgb_classifier(seed, n_estimators=trees),
                features=features,
                scale=False,
                sampler=RandomUnderSampler(random_state=seed),
            ),
            "random under-sampling in fold",
        ),
        Candidate(
            "xgboost_plain", build_pipeline(cfg, xgb_classifier(seed, n_estimators=trees), features=features, scale=False), "none"
        ),
    ]


def cv_splitter(cfg: ProjectConfig, folds: int | None = None) -> StratifiedKFold | KFold:
    """Cross-validation folds: stratified and shuffled (seeded); with ``data.date_column``,
    blocks of consecutive leads in time order (the working split is sorted by date), so a
    fold's test leads are a period, as the model will meet them."""
    n = folds or cfg.modelling.cv_folds
    if cfg.data.date_column is not None:
        return KFold(n_splits=n, shuffle=False)
    return StratifiedKFold(n_splits=n, shuffle=True, random_state=cfg.modelling.seed)


def cross_validate_candidates(candidates: Sequence[Candidate], X: pd.DataFrame, y: pd.Series, cv: StratifiedKFold) -> pd.DataFrame:
    """CV mean ± std of ROC-AUC, average precision and Brier score for each candidate."""
    from tqdm import tqdm

    rows = []
    for cand in tqdm(candidates, desc="cross-validating candidates"):
        t0 = time.perf_counter()
        res = cross_validate(cand.pipeline, X, y, cv=cv, scoring=SCORING, n_jobs=1)
        row: dict[str, Any] = {"model": cand.name, "imbalance": cand.imbalance}
        for key in SCORING:
            vals = res[f"test_{key}"] * (-1 if key == "brier" else 1)
            row[f"{key}_mean"] = float(np.mean(vals))
            row[f"{key}_std"] = float(np.std(vals))
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        log.info("%s: AUC %.4f ± %.4f", cand.name, row["roc_auc_mean"], row["roc_auc_std"])
    return pd.DataFrame(rows).sort_values("roc_auc_mean", ascending=False).reset_index(drop=True)


XGB_SEARCH_SPACE: dict[str, list[Any]] = {
    "model__n_estimators": [200, 300, 400, 600],
    "model__learning_rate": [0.02, 0.03, 0.05, 0.08],
    "model__max_depth": [3, 4, 5, 6],
    "model__min_child_weight": [1, 3, 5, 10],
    "model__subsample": [0.7, 0.8, 0.9, 1.0],
    "model__colsample_bytree": [0.5, 0.7, 0.8, 1.0],
    "model__reg_lambda": [0.5, 1.0, 2.0, 5.0],
    "model__gamma": [0.0, 0.1, 0.5],
}


def tune(
    pipeline: Pipeline,
    space: dict[str, list[Any]],
    X: pd.DataFrame,
    y: pd.Series,
    cv: StratifiedKFold,
    n_iter: int,
    seed: int,
) -> RandomizedSearchCV:
    """Bounded random search (``n_iter`` candidates) optimising CV ROC-AUC."""
    search = RandomizedSearchCV(pipeline, space, n_iter=n_iter, scoring="roc_auc", cv=cv, random_state=seed, n_jobs=1, refit=False)
    search.fit(X, y)
    return search


def calibrated(pipeline: Pipeline, method: str, cv: StratifiedKFold) -> Pipeline:
    """Same preprocessing, with the final model wrapped in a probability calibrator.

    The calibrator is fitted on out-of-fold predictions (``ensemble=False``: one model
    refit on all rows, one calibration map), so calibration never sees its own training
    predictions. A resampler, if any, stays inside the calibrated part.
    """
    steps = list(pipeline.steps)
    model_steps = [s for s in steps if s[0] in ("sample", "model")]
    prep = [s for s in steps if s[0] not in ("sample", "model")]
    inner = model_steps[-1][1] if len(model_steps) == 1 else ImbPipeline([(n, clone(e)) for n, e in model_steps])
    cal = CalibratedClassifierCV(clone(inner), method=method, cv=cv, ensemble=False)
    return Pipeline([*[(n, clone(e)) for n, e in prep], ("model", cal)])


def compare_calibration(
    pipeline: Pipeline, X: pd.DataFrame, y: pd.Series, cv: StratifiedKFold, methods: Sequence[str]
) -> pd.DataFrame:
    """CV ROC-AUC/Brier of the uncalibrated pipeline and of each calibration method."""
    rows = []
    variants = [("uncalibrated", pipeline)] + [(m, calibrated(pipeline, m, cv)) for m in methods]
    for name, est in variants:
        res = cross_validate(est, X, y, cv=cv, scoring=SCORING, n_jobs=1)
        rows.append(
            {
                "calibration": name,
                "roc_auc_mean": float(res["test_roc_auc"].mean()),
                "brier_mean": float(-res["test_brier"].mean()),
                "brier_std": float(res["test_brier"].std()),
            }
        )
    return pd.DataFrame(rows)
