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


def contributions(model: object, X: object, prepared: object = None,
                  encoded: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-lead contributions per source variable, and the prepared (clean) values.

    Returns ``(contrib, prepared)``: ``contrib`` has one column per variable the model
    uses (log-odds), ``prepared`` the cleaned values of those variables, for display.
    ``prepared``/``encoded`` from :func:`prepare` avoid running the preparation twice.
    """
    if prepared is None or encoded is None:
        prepared, encoded = prepare(model, X)
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
    groups[np.arange(len(sources)), [variables.index(s) for s in sources]] = 1.0
    contrib = pd.DataFrame(raw @ groups, columns=variables)
    return contrib, as_frame(prepared[[v for v in variables if v in prepared.columns]])


def _fmt_value(v: object) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "missing"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def top_factors(model: object, X: object, n: int = 3, prepared: object = None,
                encoded: np.ndarray | None = None) -> list[str]:
    """``n`` strongest reasons per lead, e.g. ``ocupacion=Working Professional (+2.10); ...``."""
    contrib, prepared = contributions(model, X, prepared, encoded)
    if n <= 0:
        return [""] * len(contrib)
    vals = contrib.to_numpy()
    cols = np.asarray(contrib.columns)
    order = np.argsort(-np.abs(vals), axis=1, kind="stable")[:, :n]
    prep = {c: prepared[c].to_numpy(dtype=object) for c in prepared.columns}
    out = []
    for i, idx in enumerate(order):
        parts = []
        for j in idx:
            var = cols[j]
            value = f"={_fmt_value(prep[var][i])}" if var in prep else ""
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
