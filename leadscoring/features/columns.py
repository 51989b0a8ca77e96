"""How columns travel between the feature steps: a DataFrame, or a :class:`ColumnBatch`
(column name -> numpy array), which is far cheaper to build for one lead.
"""

from __future__ import annotations

import pandas as pd
from sklearn.exceptions import NotFittedError


class ColumnBatch(dict):
    """Columns of equal length as numpy arrays, keyed by name, with a DataFrame-like
    ``columns`` and column-list indexing (``batch[["a", "b"]]``)."""

    @property
    def columns(self) -> list[str]:
        return list(self.keys())

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.values()))) if self else 0

    def __getitem__(self, key: object) -> object:
        if isinstance(key, list):
            return ColumnBatch((k, dict.__getitem__(self, k)) for k in key)
        return dict.__getitem__(self, key)

    def to_frame(self, index: pd.Index | None = None) -> pd.DataFrame:
        return pd.DataFrame(dict(self), index=index)


def as_frame(X: object) -> pd.DataFrame:
    """A DataFrame view of a DataFrame or :class:`ColumnBatch` (for display and analysis)."""
    if isinstance(X, pd.DataFrame):
        return X
    if isinstance(X, ColumnBatch):
        return X.to_frame()
    raise TypeError(f"expected a DataFrame or ColumnBatch, got {type(X).__name__}")


def require_columns(X: object) -> pd.DataFrame | ColumnBatch:
    if isinstance(X, (pd.DataFrame, ColumnBatch)):
        return X
    raise TypeError(f"expected a pandas DataFrame with named columns, got {type(X).__name__}")


def n_rows(X: pd.DataFrame | ColumnBatch) -> int:
    return X.n_rows if isinstance(X, ColumnBatch) else len(X)


def check_is_fitted(estimator: object, attribute: str) -> None:
    """scikit-learn's fitted check reduced to the one attribute that matters here (sklearn's
    own inspects every attribute and the estimator tags: 50 µs per step and call)."""
    if not hasattr(estimator, attribute):
        raise NotFittedError(f"This {type(estimator).__name__} instance is not fitted yet; call 'fit' first.")

