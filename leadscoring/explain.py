"""Why a lead got its score: per-lead contributions grouped by raw variable.

For XGBoost the contributions are its native SHAP values (``pred_contribs``); for linear
models they are coefficient × encoded value. Both are in log-odds of the *uncalibrated*
model: calibration is monotone, so the ranking of reasons is unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from xgboost import DMatrix, XGBClassifier

from .modeling import final_estimator
from .preprocessing import as_frame, encoded_feature_sources


def _step_index(model: object, name: str) -> int:
    return [n for n, _ in model.steps].index(name)  # type: ignore[attr-defined]


def prepare(model: object, X: object) -> tuple[object, np.ndarray]:
    """Run the preparation steps once: (prepared columns, encoded matrix)."""
    enc_idx = _step_index(model, "encode")
    prepared = model[:enc_idx].transform(X)  # type: ignore[index]
    return prepared, model.steps[enc_idx][1].transform(prepared)  # type: ignore[attr-defined]


def _contribution_matrix(model: object, prepared: object, encoded: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(leads × variables) contributions in log-odds, and the variable names."""
    encoder = model.steps[_step_index(model, "encode")][1]  # type: ignore[attr-defined]
    sources, _ = encoded_feature_sources(encoder)
    est = final_estimator(model)
    if isinstance(est, XGBClassifier):
        raw = est.get_booster().predict(DMatrix(encoded), pred_contribs=True)[:, :-1]
    elif isinstance(est, LogisticRegression):
        raw = encoded * est.coef_[0]
    else:
        raise TypeError(f"per-lead factors are not available for {type(est).__name__}")
    variables = list(dict.fromkeys(sources))
    groups = np.zeros((len(sources), len(variables)))
    groups[np.arange(len(sources)), [variables.index(v) for v in sources]] = 1.0
    return raw @ groups, variables


def contributions(model: object, X: object, prepared: object = None,
                  encoded: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-lead contributions per source variable, and the prepared (clean) values.

    Returns ``(contrib, prepared)``: ``contrib`` has one column per variable the model
    uses (log-odds), ``prepared`` the cleaned values of those variables, for display.
    ``prepared``/``encoded`` from :func:`prepare` avoid running the preparation twice.
    """
    if prepared is None or encoded is None:
        prepared, encoded = prepare(model, X)
    vals, variables = _contribution_matrix(model, prepared, encoded)
    shown = [v for v in variables if v in prepared.columns]
    return pd.DataFrame(vals, columns=variables), as_frame(prepared[shown])


def _fmt_value(v: object) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "missing"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def top_factors(model: object, X: object, n: int = 3, prepared: object = None,
                encoded: np.ndarray | None = None) -> list[str]:
    """``n`` strongest reasons per lead, e.g. ``ocupacion=Working Professional (+2.10); ...``."""
    if prepared is None or encoded is None:
        prepared, encoded = prepare(model, X)
    vals, variables = _contribution_matrix(model, prepared, encoded)
    if n <= 0:
        return [""] * len(vals)
    order = np.argsort(-np.abs(vals), axis=1, kind="stable")[:, :n]
    shown = {v: np.asarray(prepared[v], dtype=object) for v in variables if v in prepared.columns}
    out = []
    for i, idx in enumerate(order):
        parts = []
        for j in idx:
            var = variables[j]
            value = f"={_fmt_value(shown[var][i])}" if var in shown else ""
            parts.append(f"{var}{value} ({vals[i, j]:+.2f})")
        out.append("; ".join(parts))
    return out


def global_importance(model: object, X: pd.DataFrame) -> pd.DataFrame:
    """Mean absolute contribution per variable, and the mean signed one."""
    contrib, _ = contributions(model, X)
    return (
        pd.DataFrame({"mean_abs_contribution": contrib.abs().mean(), "mean_contribution": contrib.mean()})
        .sort_values("mean_abs_contribution", ascending=False)
        .rename_axis("variable")
        .reset_index()
    )
