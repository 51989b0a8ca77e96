"""Choosing a model by cross-validation: the candidate families (each with one way of
handling class imbalance), the family chosen by evidence, bounded tuning of the winner and
probability calibration.

With ``data.date_column`` every cross-validation is forward-chaining
(:class:`~sklearn.model_selection.TimeSeriesSplit` on the working split, which is sorted
by date): each fold trains on earlier leads and tests on later ones, as production will
meet the model. Without a date the folds are stratified and shuffled (seeded).
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
from sklearn.model_selection import (
    BaseCrossValidator,
    KFold,
    RandomizedSearchCV,
    RepeatedStratifiedKFold,
    StratifiedKFold,
    TimeSeriesSplit,
)
from sklearn.pipeline import Pipeline

from leadscoring.config import ProjectConfig
from leadscoring.formats import fixed
from leadscoring.training.pipeline import FIT_PROCESSES, build_pipeline, xgb_classifier

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

    @property
    def family(self) -> str:
        """The model family: the name without its imbalance suffix (``logistic``, ``xgboost``...)."""
        return self.name.rsplit("_", 1)[0]


#: Families that can ship, simplest first: each gives per-lead reasons (coefficients or
#: native SHAP values). Others (random forest) are measured for reference only.
FAMILIES = ("logistic", "xgboost")


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
                    n_estimators=trees, min_samples_leaf=3, class_weight="balanced_subsample", n_jobs=1, random_state=seed
                ),
                features=features,
                scale=False,
            ),
            "class weights",
            "reference only: no per-lead reasons, never shipped",
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


def candidate_pipeline(
    cfg: ProjectConfig, name: str, features: Sequence[str] | None, pos_weight: float, params: dict[str, Any], fast: bool = False
) -> Pipeline:
    """The candidate ``name`` of :func:`candidate_models` for ``cfg`` and ``features``, with
    ``params`` (pipeline parameter names, e.g. ``model__C``) set: the recipe of the chosen model."""
    by_name = {c.name: c for c in candidate_models(cfg, features, pos_weight, fast=fast)}
    return by_name[name].pipeline.set_params(**params)


def cv_splitter(
    cfg: ProjectConfig, folds: int | None = None, repeats: int = 1
) -> StratifiedKFold | RepeatedStratifiedKFold | TimeSeriesSplit:
    """Cross-validation folds: stratified and shuffled (seeded); with ``data.date_column``,
    forward-chaining (the working split is sorted by date): fold k trains on the first k
    blocks of leads and tests on the next one, never on leads created after its test leads.

    ``repeats`` > 1 draws the stratified folds that many times (each lead is tested once per
    repeat), for a decision that hangs on a difference as small as the folds' own noise;
    the first repeat is the single split's folds. Time order has one forward-chaining split,
    so a dated project ignores ``repeats``."""
    n = folds or cfg.modelling.cv_folds
    if cfg.data.date_column is not None:
        return TimeSeriesSplit(n_splits=n)
    if repeats > 1:
        return RepeatedStratifiedKFold(n_splits=n, n_repeats=repeats, random_state=cfg.modelling.seed)
    return StratifiedKFold(n_splits=n, shuffle=True, random_state=cfg.modelling.seed)


def partition_cv(cv: BaseCrossValidator) -> BaseCrossValidator:
    """Folds in which every lead is tested once, as an out-of-fold calibration map needs:
    ``cv`` itself, or contiguous blocks in time order for a forward-chaining ``cv`` (whose
    first block is never tested). Forward-chaining still judges the calibrated model."""
    if isinstance(cv, TimeSeriesSplit):
        return KFold(n_splits=cv.get_n_splits(), shuffle=False)
    return cv


def out_of_fold(estimator: Any, X: pd.DataFrame, y: pd.Series | np.ndarray, cv: BaseCrossValidator) -> np.ndarray:
    """Out-of-fold probability of each lead (NaN for leads no fold tests, e.g. the first
    block of a forward-chaining split): like ``cross_val_predict``, for any folds."""
    y = np.asarray(y)
    out = np.full(len(X), np.nan)
    for train, test in cv.split(X, y):
        est = clone(estimator).fit(X.iloc[train], y[train])
        out[test] = est.predict_proba(X.iloc[test])[:, 1]
    return out


def _fit_and_score(
    estimator: Any, X: pd.DataFrame, y: np.ndarray, train: np.ndarray, test: np.ndarray, scorer: Any
) -> tuple[dict[str, float], float]:
    """One fold: fit a clone on ``train``, score it on ``test`` (NaN scores if the fit fails,
    as ``cross_validate`` does); with the seconds it took."""
    t0 = time.perf_counter()
    try:
        est = clone(estimator).fit(X.iloc[train], y[train])
        scores = {k: float(v) for k, v in scorer(est, X.iloc[test], y[test]).items()}
    except Exception as exc:  # a fold a resampler cannot handle, say: the candidate scores NaN
        log.warning("a fold of %s failed: %s", type(estimator).__name__, exc)
        scores = dict.fromkeys(SCORING, float("nan"))
    return scores, time.perf_counter() - t0


def cross_validate_many(
    estimators: Sequence[Any], X: pd.DataFrame, y: pd.Series | np.ndarray, cv: BaseCrossValidator, desc: str | None = None
) -> list[dict[str, np.ndarray]]:
    """:func:`~sklearn.model_selection.cross_validate` (with :data:`SCORING`) of several
    estimators on the same folds. Every (estimator, fold) fit goes to one pool of
    :data:`FIT_PROCESSES` processes, so no core waits for one estimator's last fold. Each result
    holds ``test_<metric>`` arrays (Brier negated, as scikit-learn reports it) and
    ``seconds``, the fit and scoring time summed over the folds."""
    from joblib import Parallel, delayed
    from sklearn.metrics import check_scoring
    from tqdm import tqdm

    y = np.asarray(y)
    folds = list(cv.split(X, y))
    scorer = check_scoring(estimators[0], scoring=SCORING)
    tasks = (delayed(_fit_and_score)(est, X, y, train, test, scorer) for est in estimators for train, test in folds)
    done = Parallel(n_jobs=FIT_PROCESSES, return_as="generator")(tasks)
    if desc:
        done = tqdm(done, total=len(estimators) * len(folds), desc=desc)
    outcomes = list(done)
    results = []
    for i in range(len(estimators)):
        part = outcomes[i * len(folds) : (i + 1) * len(folds)]
        res = {f"test_{k}": np.array([scores[k] for scores, _ in part]) for k in SCORING}
        res["seconds"] = float(sum(sec for _, sec in part))
        results.append(res)
    return results


def cross_validate_candidates(
    candidates: Sequence[Candidate], X: pd.DataFrame, y: pd.Series, cv: BaseCrossValidator
) -> pd.DataFrame:
    """CV mean ± std (and standard error) of ROC-AUC, average precision and Brier score for
    each candidate, with its family and ``seconds`` (fit and scoring time over its folds)."""
    rows = []
    results = cross_validate_many([c.pipeline for c in candidates], X, y, cv, desc="cross-validating candidates")
    for cand, res in zip(candidates, results, strict=True):
        row: dict[str, Any] = {"model": cand.name, "family": cand.family, "imbalance": cand.imbalance}
        for key in SCORING:
            vals = res[f"test_{key}"] * (-1 if key == "brier" else 1)
            row[f"{key}_mean"] = float(np.mean(vals))
            row[f"{key}_std"] = float(np.std(vals))
        row["roc_auc_se"] = float(np.std(res["test_roc_auc"], ddof=1) / np.sqrt(len(res["test_roc_auc"])))
        row["seconds"] = round(res["seconds"], 1)
        rows.append(row)
        log.info("%s: AUC %.4f ± %.4f", cand.name, row["roc_auc_mean"], row["roc_auc_std"])
    return pd.DataFrame(rows).sort_values("roc_auc_mean", ascending=False).reset_index(drop=True)


@dataclass
class Choice:
    """The family chosen to ship, its best candidate, and why (plain English)."""

    family: str
    candidate: str
    reason: str


#: Ways of handling class imbalance, simplest first (the candidate name's suffix).
IMBALANCE_ORDER = ("plain", "weighted", "smote", "undersampled")


def _simplest(rows: pd.DataFrame) -> pd.Series:
    """Of one family's candidates, the simplest within one standard error of its best."""
    best = rows.iloc[0]
    close = rows[best["roc_auc_mean"] - rows["roc_auc_mean"] <= best["roc_auc_se"]]
    rank = close["model"].map(lambda m: next((i for i, s in enumerate(IMBALANCE_ORDER) if m.endswith(s)), 9))
    return close.loc[rank.idxmin()]


def choose_model(cv_table: pd.DataFrame) -> Choice:
    """The shippable candidate by CV ROC-AUC, preferring simplicity wherever the folds
    cannot tell candidates apart (within one standard error of the best): first the simpler
    family (:data:`FAMILIES`, simplest first), then within it the simpler imbalance
    handling (:data:`IMBALANCE_ORDER`: none before weights before resampling)."""
    ship = cv_table[cv_table["family"].isin(FAMILIES)].sort_values("roc_auc_mean", ascending=False).reset_index(drop=True)
    if ship.empty:
        raise ValueError("no shippable candidate (logistic regression or XGBoost) was cross-validated")
    best = ship.iloc[0]
    for family in FAMILIES:
        rows = ship[ship["family"] == family]
        if rows.empty or best["roc_auc_mean"] - rows["roc_auc_mean"].iloc[0] > best["roc_auc_se"]:
            continue
        pick = _simplest(rows)
        if family == best["family"]:
            others = ship[ship["family"] != family]
            why = f"{family} has the best CV ROC-AUC, {fixed(best['roc_auc_mean'], 4)} ({best['model']})"
            if len(others):
                o = others.iloc[0]
                why += (
                    f"; next family {o['family']} at {fixed(o['roc_auc_mean'], 4)} "
                    f"(+{fixed(best['roc_auc_mean'] - o['roc_auc_mean'], 4)} "
                    f"for {family}, one standard error {fixed(best['roc_auc_se'], 4)})"
                )
        else:
            why = (
                f"{family} (best CV ROC-AUC {fixed(rows['roc_auc_mean'].iloc[0], 4)}) is within one standard error "
                f"({fixed(best['roc_auc_se'], 4)}) of {best['model']} ({fixed(best['roc_auc_mean'], 4)}): "
                "the simpler family is preferred"
            )
        if pick["model"] != rows["model"].iloc[0]:
            why += (
                f"; {pick['model']} ({fixed(pick['roc_auc_mean'], 4)}) ships rather than {rows['model'].iloc[0]} "
                f"({fixed(rows['roc_auc_mean'].iloc[0], 4)}): within one standard error, the simpler imbalance handling"
            )
        return Choice(family, str(pick["model"]), why)
    raise AssertionError("unreachable: the best candidate's own family is within reach")


#: What a bounded random search tries, per family.
LOGISTIC_SEARCH_SPACE: dict[str, list[Any]] = {"model__C": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]}

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


SEARCH_SPACES = {"logistic": LOGISTIC_SEARCH_SPACE, "xgboost": XGB_SEARCH_SPACE}


def tune(
    pipeline: Pipeline,
    space: dict[str, list[Any]],
    X: pd.DataFrame,
    y: pd.Series,
    cv: BaseCrossValidator,
    n_iter: int,
    seed: int,
) -> RandomizedSearchCV:
    """Bounded random search (``n_iter`` candidates, fewer if the space is smaller)
    optimising CV ROC-AUC."""
    size = int(np.prod([len(v) for v in space.values()]))
    search = RandomizedSearchCV(
        pipeline, space, n_iter=min(n_iter, size), scoring="roc_auc", cv=cv, random_state=seed, n_jobs=FIT_PROCESSES, refit=False
    )
    search.fit(X, y)
    return search


def tuned_params(search: RandomizedSearchCV, default_auc: float, default_se: float) -> tuple[dict[str, Any], str]:
    """(parameters, reason): the search's best parameters when their CV ROC-AUC beats the
    default's by more than the default's standard error, else none (the defaults). The best
    of many noisy CV estimates is biased upwards (the winner's curse), so a gain the folds
    cannot tell from noise keeps the simpler, untuned model."""
    best, gain = float(search.best_score_), float(search.best_score_) - default_auc
    if gain > default_se:
        return dict(search.best_params_), (
            f"searched parameters: CV ROC-AUC {fixed(best, 4)} against {fixed(default_auc, 4)} for the defaults "
            f"(+{fixed(gain, 4)}, more than one standard error, {fixed(default_se, 4)})"
        )
    return {}, (
        f"default parameters: the best searched CV ROC-AUC, {fixed(best, 4)}, is within one standard error "
        f"({fixed(default_se, 4)}) of the defaults' {fixed(default_auc, 4)} ({fixed(gain, 4, signed=True)})"
    )


#: The calibration "method" that keeps the model's own probabilities.
UNCALIBRATED = "uncalibrated"


def calibrated(pipeline: Pipeline, method: str, cv: BaseCrossValidator) -> Pipeline:
    """Same preprocessing, with the final model wrapped in a probability calibrator
    (``isotonic`` or ``sigmoid``); for :data:`UNCALIBRATED`, an unfitted copy of ``pipeline``.

    The calibrator is fitted on out-of-fold predictions (``ensemble=False``: one model
    refit on all rows, one calibration map), so calibration never sees its own training
    predictions; the folds are :func:`partition_cv` of ``cv``. A resampler, if any, stays
    inside the calibrated part.
    """
    if method == UNCALIBRATED:
        return clone(pipeline)
    steps = list(pipeline.steps)
    model_steps = [s for s in steps if s[0] in ("sample", "model")]
    prep = [s for s in steps if s[0] not in ("sample", "model")]
    inner = model_steps[-1][1] if len(model_steps) == 1 else ImbPipeline([(n, clone(e)) for n, e in model_steps])
    cal = CalibratedClassifierCV(clone(inner), method=method, cv=partition_cv(cv), ensemble=False)
    return Pipeline([*[(n, clone(e)) for n, e in prep], ("model", cal)])


def compare_calibration(
    pipeline: Pipeline, X: pd.DataFrame, y: pd.Series, cv: BaseCrossValidator, methods: Sequence[str]
) -> pd.DataFrame:
    """CV ROC-AUC/Brier of the uncalibrated pipeline and of each calibration method, with
    the ROC-AUC each method costs (``auc_change``: calibrated minus uncalibrated)."""
    rows = []
    variants = [(UNCALIBRATED, pipeline)] + [(m, calibrated(pipeline, m, cv)) for m in methods]
    results = cross_validate_many([est for _, est in variants], X, y, cv)
    for (name, _), res in zip(variants, results, strict=True):
        rows.append(
            {
                "calibration": name,
                "roc_auc_mean": float(res["test_roc_auc"].mean()),
                "brier_mean": float(-res["test_brier"].mean()),
                "brier_std": float(res["test_brier"].std()),
            }
        )
    table = pd.DataFrame(rows)
    table["auc_change"] = table["roc_auc_mean"] - table["roc_auc_mean"].iloc[0]
    return table


#: The CV ROC-AUC a calibration may cost and still count as costing no ranking (rounding).
NO_RANKING_COST = 0.0005


def choose_calibration(cal_table: pd.DataFrame, configured: str, max_auc_cost: float = NO_RANKING_COST) -> tuple[str, str]:
    """(method, reason): the configured method, or for ``auto`` the lowest CV Brier score
    among the model's own probabilities (:data:`UNCALIBRATED`) and the methods that cost no
    ranking (at most ``max_auc_cost`` of CV ROC-AUC: isotonic maps tie leads, which can blunt
    ranking). Calibration is for probabilities a sales team can read: it must not reorder the
    leads they call first, and it ships only when it makes the probabilities better."""
    table = cal_table.set_index("calibration")
    if configured != "auto":
        row = table.loc[configured]
        return (
            configured,
            f"configured (CV Brier {fixed(row['brier_mean'], 4)}, ROC-AUC change {fixed(row['auc_change'], 4, signed=True)})",
        )
    keep = cal_table[cal_table["auc_change"] >= -max_auc_cost].sort_values("brier_mean", kind="stable")
    row = keep.iloc[0]  # the uncalibrated row costs nothing: never empty
    if row["calibration"] == UNCALIBRATED:
        others = cal_table[cal_table["calibration"] != UNCALIBRATED]
        versus = ", ".join(f"{r.calibration} {fixed(r.brier_mean, 4)}" for r in others.itertuples())
        return UNCALIBRATED, (
            f"none: the model's own probabilities have the lowest CV Brier score ({fixed(row['brier_mean'], 4)}; {versus})"
        )
    return str(row["calibration"]), (
        f"lowest CV Brier score ({fixed(row['brier_mean'], 4)}, "
        f"uncalibrated {fixed(table.loc[UNCALIBRATED, 'brier_mean'], 4)}) among "
        f"methods costing at most {max_auc_cost} of ROC-AUC (change {fixed(row['auc_change'], 4, signed=True)})"
    )


def model_label(candidate: str, method: str) -> str:
    """The shipped model's name: its candidate and calibration (``xgboost_plain + sigmoid calibration``)."""
    return candidate if method == UNCALIBRATED else f"{candidate} + {method} calibration"
