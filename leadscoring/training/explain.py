"""Why a lead got its score: per-lead contributions grouped by raw variable.

For XGBoost the contributions are its native SHAP values (``pred_contribs``); for linear
models they are coefficient × encoded value. Both are in log-odds of the *uncalibrated*
model: calibration is monotone, so the ranking of reasons is unchanged.

"""

from __future__ import annotations

import weakref

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from xgboost import DMatrix, XGBClassifier

from leadscoring.features.columns import as_frame
from leadscoring.features.encoding import encoded_feature_sources
from leadscoring.training.pipeline import booster_matrix, final_estimator, transform_steps


def _step_index(model: object, name: str) -> int:
    return [n for n, _ in model.steps].index(name)  # type: ignore[attr-defined]


def prepare(model: object, X: object, skip: int = 0) -> tuple[object, np.ndarray]:
    """Run the preparation steps once: (prepared columns, encoded matrix). ``skip``: ``X``
    has already been through the first ``skip`` steps."""
    enc_idx = _step_index(model, "encode")
    prepared = transform_steps(model, X, start=skip, stop=enc_idx)  # type: ignore[arg-type]
    return prepared, model.steps[enc_idx][1].transform(prepared)  # type: ignore[attr-defined]


_GROUPS: weakref.WeakKeyDictionary[object, tuple[np.ndarray, list[str]]] = weakref.WeakKeyDictionary()


def _variable_groups(encoder: object) -> tuple[np.ndarray, list[str]]:
    """(encoded columns × variables) 0/1 matrix summing encoded columns per raw variable,
    and the variable names; computed once per fitted encoder."""
    cached = _GROUPS.get(encoder)
    if cached is None:
        sources, _ = encoded_feature_sources(encoder)  # type: ignore[arg-type]
        variables = list(dict.fromkeys(sources))
        groups = np.zeros((len(sources), len(variables)))
        groups[np.arange(len(sources)), [variables.index(v) for v in sources]] = 1.0
        cached = _GROUPS[encoder] = (groups, variables)
    return cached


def contribution_matrix(
    model: object, prepared: object, encoded: np.ndarray, dmatrix: DMatrix | None = None
) -> tuple[np.ndarray, list[str]]:
    """(leads × variables) contributions in log-odds, and the variable names
    (``dmatrix``: the booster's input for ``encoded``, if already built)."""
    encoder = model.steps[_step_index(model, "encode")][1]  # type: ignore[attr-defined]
    groups, variables = _variable_groups(encoder)
    est = final_estimator(model)
    if isinstance(est, XGBClassifier):
        dm = dmatrix if dmatrix is not None else booster_matrix(est, encoded)
        raw = est.get_booster().predict(dm, pred_contribs=True, validate_features=False)[:, :-1]
    elif isinstance(est, LogisticRegression):
        raw = encoded * est.coef_[0]
    else:
        raise TypeError(f"per-lead factors are not available for {type(est).__name__}")
    return raw @ groups, variables


def contributions(
    model: object, X: object, prepared: object = None, encoded: np.ndarray | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-lead contributions per source variable, and the prepared (clean) values.

    Returns ``(contrib, prepared)``: ``contrib`` has one column per variable the model
    uses (log-odds), ``prepared`` the cleaned values of those variables, for display.
    ``prepared``/``encoded`` from :func:`prepare` avoid running the preparation twice.
    """
    if prepared is None or encoded is None:
        prepared, encoded = prepare(model, X)
    vals, variables = contribution_matrix(model, prepared, encoded)
    shown = [v for v in variables if v in prepared.columns]
    return pd.DataFrame(vals, columns=variables), as_frame(prepared[shown])


def global_importance(model: object, X: pd.DataFrame) -> pd.DataFrame:
    """Mean absolute contribution per variable, and the mean signed one."""
    contrib, _ = contributions(model, X)
    return (
        pd.DataFrame({"mean_abs_contribution": contrib.abs().mean(), "mean_contribution": contrib.mean()})
        .sort_values("mean_abs_contribution", ascending=False)
        .rename_axis("variable")
        .reset_index()
    )
