"""Derived features (products and ratios of numeric columns) and the column selection
that keeps the variables chosen in notebook 06.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from leadscoring.features.columns import ColumnBatch, LeadTransformer


class LeadFeatures(LeadTransformer):
    """Add derived numeric features: products ``a * b`` and ratios ``a / b`` (0 when b is 0)."""

    def __init__(
        self,
        products: dict[str, tuple[str, str]] | None = None,
        ratios: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        self.products = products
        self.ratios = ratios

    def fit(self, X: pd.DataFrame, y: object = None) -> LeadFeatures:
        X = self._fit_input(X)
        names = list(X.columns)
        for kind in (self.products or {}, self.ratios or {}):
            names += [n for n, (a, b) in kind.items() if a in X.columns and b in X.columns]
        self.feature_names_out_ = names
        return self

    def transform(self, X: pd.DataFrame | ColumnBatch) -> pd.DataFrame | ColumnBatch:
        check_is_fitted(self, "feature_names_out_")
        X = self._transform_input(X)
        out = ColumnBatch(X) if isinstance(X, ColumnBatch) else ColumnBatch((c, np.asarray(X[c])) for c in X.columns)
        for name, (a, b) in (self.products or {}).items():
            if name in self.feature_names_out_:
                out[name] = np.asarray(out[a], dtype=float) * np.asarray(out[b], dtype=float)
        for name, (a, b) in (self.ratios or {}).items():
            if name in self.feature_names_out_:
                num, den = np.asarray(out[a], dtype=float), np.asarray(out[b], dtype=float)
                safe = (den != 0) & ~np.isnan(den)
                ratio = np.divide(num, den, out=np.zeros_like(num), where=safe)  # 0 where den is 0 or missing
                out[name] = np.where(np.isnan(num), np.nan, ratio)
        return self._output(out[self.feature_names_out_], X)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_out_")
        return self._renamed(self.feature_names_out_, input_features)


class ColumnSelector(LeadTransformer):
    """Keep only ``columns`` (those present; None keeps all). Used for the selected variables."""

    def __init__(self, columns: Sequence[str] | None = None) -> None:
        self.columns = columns

    def fit(self, X: pd.DataFrame, y: object = None) -> ColumnSelector:
        X = self._fit_input(X)
        cols = list(X.columns) if self.columns is None else [c for c in self.columns if c in X.columns]
        self.feature_names_out_ = cols
        return self

    def transform(self, X: pd.DataFrame | ColumnBatch) -> pd.DataFrame | ColumnBatch:
        check_is_fitted(self, "feature_names_out_")
        X = self._transform_input(X)
        return self._output(ColumnBatch((c, np.asarray(X[c])) for c in self.feature_names_out_), X)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_out_")
        return self._renamed(self.feature_names_out_, input_features)
