"""What the feature steps share: their base class, which keeps scikit-learn's transformer
contract, and :class:`ColumnBatch`, the column-name → numpy-array input of the serving fast
path (far cheaper to build for one lead than a DataFrame).

The steps select columns by name. They take a DataFrame (any column order, extra columns
ignored) or a 2-D array (columns named ``x0, x1, ...`` as in fit) and return a DataFrame
(the encoder: a float matrix); given a :class:`ColumnBatch` they return one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import _check_feature_names_in, validate_data


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


def n_rows(X: pd.DataFrame | ColumnBatch) -> int:
    return X.n_rows if isinstance(X, ColumnBatch) else len(X)


class LeadTransformer(TransformerMixin, BaseEstimator):
    """Base of the feature steps: input checks and names per scikit-learn's contract."""

    _TAGS_BY_CLASS: dict[type, object] = {}

    def __sklearn_tags__(self):  # noqa: ANN204 - sklearn's Tags
        # The same for every instance of a class, and asked for by every fitted check (each
        # step's transform): built once per class.
        cached = LeadTransformer._TAGS_BY_CLASS.get(type(self))
        if cached is None:
            tags = super().__sklearn_tags__()
            tags.input_tags.allow_nan = True  # missing values are data here
            tags.input_tags.string = True  # categorical and yes/no columns are text
            tags.input_tags.categorical = True
            tags.transformer_tags.preserves_dtype = []  # numbers come out as float64
            cached = LeadTransformer._TAGS_BY_CLASS[type(self)] = tags
        return cached

    def _frame(self, X: object) -> pd.DataFrame:
        """A 2-D array-like as a DataFrame named as in fit (``x0, x1, ...``); clear errors
        for what the steps cannot take."""
        if sparse.issparse(X):
            raise TypeError(f"{type(self).__name__} does not take sparse input; pass a DataFrame or a dense array")
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise ValueError(
                f"Expected 2D array, got {arr.ndim}D array instead. Reshape your data: one row per lead, one column per variable"
            )
        if np.iscomplexobj(arr):
            raise ValueError("Complex data not supported")
        return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])

    def _fit_input(self, X: object) -> pd.DataFrame | ColumnBatch:
        """Check the training input; record ``n_features_in_`` (and ``feature_names_in_`` for
        named columns)."""
        if isinstance(X, ColumnBatch):
            X = X.to_frame()
        validate_data(self, X, reset=True, skip_check_array=True)
        frame = X if isinstance(X, pd.DataFrame) else self._frame(X)
        if frame.shape[0] == 0:
            raise ValueError(f"0 sample(s) (shape={frame.shape}) while a minimum of 1 is required by {type(self).__name__}.")
        if frame.shape[1] == 0:
            raise ValueError(f"0 feature(s) (shape={frame.shape}) while a minimum of 1 is required by {type(self).__name__}.")
        return frame

    def _transform_input(self, X: object) -> pd.DataFrame | ColumnBatch:
        """The input to transform: a DataFrame or column batch as given (columns are found by
        name); an array checked for its number of columns and named as in fit."""
        if isinstance(X, (pd.DataFrame, ColumnBatch)):
            return X
        frame = self._frame(X)
        validate_data(self, X, reset=False, skip_check_array=True)
        return frame

    @staticmethod
    def _output(out: ColumnBatch, X: object) -> pd.DataFrame | ColumnBatch:
        return out if isinstance(X, ColumnBatch) else out.to_frame()

    def _renamed(self, names: Sequence[str], input_features: object) -> np.ndarray:
        """``names`` (output columns named after input columns) with the input names replaced
        by ``input_features`` (scikit-learn's ``get_feature_names_out`` contract)."""
        fitted = list(getattr(self, "feature_names_in_", [f"x{i}" for i in range(self.n_features_in_)]))
        given = list(_check_feature_names_in(self, input_features))
        rename = dict(zip(fitted, given, strict=True))
        return np.asarray([rename.get(n, n) for n in names], dtype=object)
