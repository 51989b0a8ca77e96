"""Speed shortcuts for scoring, each checked against the scikit-learn call it replaces.

Scoring one lead through scikit-learn's wrappers costs milliseconds of per-call checks for
microseconds of arithmetic. The shortcuts here skip that overhead, and only that:

- :class:`ProbabilityFunction`: the booster and the fitted calibration map, without
  ``CalibratedClassifierCV.predict_proba``'s wrappers (checked against it when built);
- :func:`shared_steps`: fitted steps that are the same in the scoring and segment models
  (cleaning, derived features) run once per call;
- :func:`segment_numbers`: the nearest KMeans centre computed as ``KMeans.predict`` does,
  without its per-call validation and thread-pool set-up;
- :func:`as_batch` and :func:`transform_steps` (from the training pipeline): each fitted
  step called directly rather than through a sliced ``Pipeline``, on column batches
  rather than DataFrames.

``LEADSCORING_FAST_PATHS=0`` turns all of them off: the scorer then calls the plain
scikit-learn objects (``predict_proba``, ``KMeans.predict``), which give the same results.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import pandas as pd
from imblearn.pipeline import Pipeline as ImbPipeline
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline
from xgboost import DMatrix, XGBClassifier

from leadscoring.features.columns import ColumnBatch
from leadscoring.training.pipeline import booster_matrix, transform_steps

log = logging.getLogger(__name__)

#: Environment switch: "0" (or "false", "no", "off") turns every shortcut off.
FAST_PATHS_ENV = "LEADSCORING_FAST_PATHS"


def enabled() -> bool:
    """Whether the shortcuts are on (default yes; see :data:`FAST_PATHS_ENV`)."""
    return os.environ.get(FAST_PATHS_ENV, "1").strip().casefold() not in {"0", "false", "no", "off"}


def as_batch(X: Any) -> Any:
    """A DataFrame's columns as a :class:`ColumnBatch`: every feature step then passes
    column batches along instead of building a DataFrame per step."""
    if isinstance(X, pd.DataFrame):
        return ColumnBatch((c, X[c].to_numpy()) for c in X.columns)
    return X


def segment_numbers(segmenter: Any, X: Any, skip: int = 0) -> np.ndarray:
    """``segmenter.predict(X)`` by the nearest centre (||c||² - 2 x·c, first minimum, as
    ``KMeans.predict``), without its per-call validation and thread-pool set-up (1 ms for
    one lead). ``skip``: ``X`` has already been through the first ``skip`` feature steps."""
    Z = transform_steps(segmenter.features_, X, start=skip)
    centers = segmenter.kmeans_.cluster_centers_
    nearest = ((centers * centers).sum(axis=1) - 2.0 * (Z @ centers.T)).argmin(axis=1)
    return segmenter.renumber(nearest)


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


#: Largest difference from ``predict_proba`` the lean path may show on its probe before it
#: is set aside. It calls the same code on the same numbers, so on one machine it agrees bit
#: for bit; the tolerance only absorbs last-bit differences of vectorised maths between
#: CPUs and library builds (scores are rounded to 6 decimals).
LEAN_TOLERANCE = 1e-12


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
        elif hasattr(calibrator, "f_") and calibrator.out_of_bounds == "clip":  # IsotonicRegression._transform's steps
            lo, hi, f, dtype = calibrator.X_min_, calibrator.X_max_, calibrator.f_, calibrator.X_thresholds_.dtype
            self._calibrate = lambda p: f(np.clip(p.astype(dtype), lo, hi)).astype(dtype).astype(np.float64)
        elif hasattr(calibrator, "a_") and hasattr(calibrator, "b_"):  # _SigmoidCalibration.predict's expression
            a, b = calibrator.a_, calibrator.b_
            self._calibrate = lambda p: np.asarray(expit(-(a * p + b)), dtype=np.float64)
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
