"""Model pipelines, candidate comparison by cross-validation, tuning and calibration.

Every model is one estimator from raw columns to probability: cleaning, derived features,
variable selection, encoding, (optional) resampling and the classifier travel together,
so cross-validation refits all of them inside each fold and nothing leaks.
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
from sklearn.base import BaseEstimator, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RandomizedSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import Pipeline
from xgboost import DMatrix, XGBClassifier

from .config import ProjectConfig
from .preprocessing import ColumnSelector, LeadCleaner, LeadFeatures, build_encoder

log = logging.getLogger(__name__)

SCORING = {"roc_auc": "roc_auc", "average_precision": "average_precision", "brier": "neg_brier_score"}


def preparation_steps(cfg: ProjectConfig, features: Sequence[str] | None = None) -> list[tuple[str, Any]]:
    """Cleaning, derived features and variable selection, configured from ``cfg``."""
    d, roles = cfg.data, cfg.data.columns
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
    return [*cfg.data.columns.numeric, *cfg.features.products, *cfg.features.ratios]


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
        n_jobs=2,
        random_state=seed,
    )
    base.update(params)
    return XGBClassifier(**base)


@dataclass
class Candidate:
    name: str
    pipeline: Pipeline
    imbalance: str
    notes: str = ""


def candidate_models(
    cfg: ProjectConfig, features: Sequence[str] | None, pos_weight: float, fast: bool = False
) -> list[Candidate]:
    """The model families compared in notebook 07, each with imbalance handled one way."""
    seed = cfg.modelling.seed
    trees = 100 if fast else 300
    lr = dict(max_iter=2000, C=1.0)
    return [
        Candidate("logistic_plain", build_pipeline(cfg, LogisticRegression(**lr), features=features), "none",
                  "reference: plain logistic regression"),
        Candidate("logistic_weighted", build_pipeline(cfg, LogisticRegression(class_weight="balanced", **lr),
                                                      features=features), "class weights"),
        Candidate("logistic_smote", build_pipeline(cfg, LogisticRegression(**lr), features=features,
                                                   sampler=SMOTE(random_state=seed)), "SMOTE in fold"),
        Candidate("random_forest_weighted", build_pipeline(
            cfg, RandomForestClassifier(n_estimators=trees, min_samples_leaf=3, class_weight="balanced_subsample",
                                        n_jobs=2, random_state=seed), features=features, scale=False),
                  "class weights"),
        Candidate("xgboost_weighted", build_pipeline(
            cfg, xgb_classifier(seed, n_estimators=trees, scale_pos_weight=pos_weight), features=features,
            scale=False), "scale_pos_weight"),
        Candidate("xgboost_undersampled", build_pipeline(
            cfg, xgb_classifier(seed, n_estimators=trees), features=features, scale=False,
            sampler=RandomUnderSampler(random_state=seed)), "random under-sampling in fold"),
        Candidate("xgboost_plain", build_pipeline(
            cfg, xgb_classifier(seed, n_estimators=trees), features=features, scale=False), "none"),
    ]


def cv_splitter(cfg: ProjectConfig, folds: int | None = None) -> StratifiedKFold:
    return StratifiedKFold(n_splits=folds or cfg.modelling.cv_folds, shuffle=True, random_state=cfg.modelling.seed)


def cross_validate_candidates(
    candidates: Sequence[Candidate], X: pd.DataFrame, y: pd.Series, cv: StratifiedKFold
) -> pd.DataFrame:
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
    search = RandomizedSearchCV(
        pipeline, space, n_iter=n_iter, scoring="roc_auc", cv=cv, random_state=seed, n_jobs=1, refit=False
    )
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
        rows.append({
            "calibration": name,
            "roc_auc_mean": float(res["test_roc_auc"].mean()),
            "brier_mean": float(-res["test_brier"].mean()),
            "brier_std": float(res["test_brier"].std()),
        })
    return pd.DataFrame(rows)


def transform_steps(pipeline: Pipeline, X: Any, start: int = 0, stop: int | None = None) -> Any:
    """``pipeline[start:stop].transform(X)``, calling each fitted step directly.

    Same result as slicing the pipeline, without building a new Pipeline and running its
    per-call checks (which cost more than the steps themselves for one lead).
    """
    for _, step in pipeline.steps[start:stop]:
        if step is not None and step != "passthrough":
            X = step.transform(X)
    return X


def _equal(a: Any, b: Any) -> bool:
    """Deep equality of fitted attributes (numpy arrays, containers, estimators)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, BaseEstimator):
        return _equal(vars(a), vars(b))
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def shared_steps(a: Pipeline, b: Pipeline) -> int:
    """How many leading steps two fitted pipelines share (same class, parameters and fitted
    state), so their output for those steps can be computed once for both."""
    n = 0
    for (_, x), (_, y) in zip(a.steps, b.steps, strict=False):
        if not _equal(x, y):
            break
        n += 1
    return n


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


#: Largest difference from ``predict_proba`` the lean path may show on its probe before it
#: is set aside. It calls the same code on the same numbers, so on one machine it agrees bit
#: for bit; the tolerance only absorbs last-bit differences of vectorised maths between
#: CPUs and library builds (scores are rounded to 6 decimals).
LEAN_TOLERANCE = 1e-12


def _known_calibration_map(calibrator: Any) -> bool:
    """A fitted isotonic (clipping) or sigmoid calibration map."""
    isotonic = hasattr(calibrator, "f_") and getattr(calibrator, "out_of_bounds", None) == "clip"
    return isotonic or (hasattr(calibrator, "a_") and hasattr(calibrator, "b_"))


class ProbabilityFunction:
    """``step.predict_proba(X)[:, 1]`` of a fitted final step, without the per-call overhead
    of scikit-learn's wrappers (2 ms per call for one lead, 7 × XGBoost's own cost).

    For XGBoost, optionally inside ``CalibratedClassifierCV(ensemble=False)`` with an
    isotonic or sigmoid map, the booster predicts from a ``DMatrix`` (which the per-lead
    reasons can reuse, see :meth:`matrix`) and the fitted calibration map is applied
    directly. This lean path is used only if it reproduces ``predict_proba`` on a probe
    matrix when built, within :data:`LEAN_TOLERANCE` (checked, not assumed); anything else
    (other models, calibration ensembles, early stopping, a mismatch) calls
    ``predict_proba`` itself.
    """

    def __init__(self, step: Any, probe_rows: int = 256, seed: int = 0) -> None:
        self.step = step
        self._estimator: Any = None
        self._booster: Any = None
        self._calibrate: Any = None
        if self._set_up_lean(step) and not self._reproduces(step, probe_rows, seed):
            log.warning("lean probability path does not reproduce predict_proba; using predict_proba")
            self._booster = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.step,))  # rebuilt (and re-checked) where it is unpickled

    @property
    def lean(self) -> bool:
        """True when the lean path is in use."""
        return self._booster is not None

    def _set_up_lean(self, step: Any) -> bool:
        est, calibrator = step, None
        if isinstance(step, CalibratedClassifierCV):
            if len(step.calibrated_classifiers_) != 1 or step.method not in ("isotonic", "sigmoid"):
                return False
            cc = step.calibrated_classifiers_[0]
            est, calibrator = cc.estimator, cc.calibrators[0]
            if isinstance(est, ImbPipeline) and all(n == "sample" for n, _ in est.steps[:-1]):
                est = est.steps[-1][1]  # samplers do nothing at prediction time
        if not isinstance(est, XGBClassifier) or getattr(est, "n_classes_", 2) != 2 or est.early_stopping_rounds:
            return False
        if calibrator is None:
            self._calibrate = lambda p: p.astype(np.float64)
        elif _known_calibration_map(calibrator):
            # The fitted map's own predict, exactly as CalibratedClassifierCV calls it: the
            # same expression evaluated the same way, not a re-implementation of it.
            self._calibrate = lambda p: np.asarray(calibrator.predict(p), dtype=np.float64)
        else:
            return False
        self._estimator, self._booster = est, est.get_booster()
        return True

    def _reproduces(self, step: Any, rows: int, seed: int) -> bool:
        n_features = getattr(step, "n_features_in_", None)
        if not n_features:
            return False
        rng = np.random.default_rng(seed)
        probe = rng.normal(0.0, 2.0, size=(rows, int(n_features)))
        probe[rng.random(probe.shape) < 0.1] = np.nan
        probe[: rows // 4] = np.round(np.clip(probe[: rows // 4], 0, 1))  # one-hot-like rows
        try:
            diff = np.abs(self(probe) - step.predict_proba(probe)[:, 1])
            return bool(np.all(diff <= LEAN_TOLERANCE))
        except Exception as exc:  # noqa: BLE001 - any failure means: use the reference path
            log.warning("lean probability path failed its check: %s", exc)
            return False

    def matrix(self, X: np.ndarray) -> DMatrix | None:
        """The booster's input for ``X``, to share with the reasons (None off the lean path)."""
        if self._booster is None:
            return None
        return booster_matrix(self._estimator, X)

    def __call__(self, X: np.ndarray, dmatrix: DMatrix | None = None) -> np.ndarray:
        if self._booster is None:
            return np.asarray(self.step.predict_proba(X)[:, 1], dtype=np.float64)
        raw = self._booster.predict(dmatrix if dmatrix is not None else self.matrix(X), validate_features=False)
        p = self._calibrate(raw)
        p[(p > 1.0) & (p <= 1.0 + 1e-5)] = 1.0
        return p
