"""Cleaning raw lead columns into typed model inputs (:class:`LeadCleaner`).

Every statistic (canonical spellings, clipping bounds, constant columns) is learned in
``fit`` on training data only, so scoring a single lead gives the same result as scoring it
inside a batch, and nothing leaks from validation data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from leadscoring.features.columns import ColumnBatch, LeadTransformer
from leadscoring.ingest.values import is_missing, map_unique


class LeadCleaner(LeadTransformer):
    """Turn validated raw columns into clean, typed model inputs.

    - placeholders (``missing_values``, e.g. ``Select``) and blanks become missing;
    - categorical spellings that differ only in case/spaces (``google``/``Google``) are
      mapped to the most frequent spelling seen in ``fit``;
    - yes/no columns become 1.0 / 0.0 (missing stays NaN);
    - numeric columns are clipped to the [1 - q, q] quantiles learned in ``fit``;
    - columns constant in ``fit`` are dropped (``drop_constant``).

    Columns not named in any role (id, target, extras) are dropped. With no role given at
    all, every input column is numeric.
    """

    def __init__(
        self,
        numeric: Sequence[str] = (),
        categorical: Sequence[str] = (),
        yes_no: Sequence[str] = (),
        missing_values: Sequence[str] = ("Select",),
        yes_values: Sequence[str] = ("Yes",),
        clip_quantile: float | None = 0.99,
        drop_constant: bool = True,
    ) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.yes_no = yes_no
        self.missing_values = missing_values
        self.yes_values = yes_values
        self.clip_quantile = clip_quantile
        self.drop_constant = drop_constant

    # -- helpers -----------------------------------------------------------------
    # Work on distinct values (map_unique) and numpy arrays, not pandas string methods:
    # fast on millions of leads and on the single lead a scoring service receives.
    def _normalisers(self) -> tuple[Callable[[object], str | None], Callable[[object], float]]:
        """(text, yes/no) value cleaners: blanks and placeholders → missing (None / NaN)."""
        missing = {m.casefold() for m in self.missing_values}
        yes = {v.casefold() for v in self.yes_values}

        def norm(v: object) -> str | None:
            if is_missing(v):
                return None
            t = str(v).strip()
            return None if (not t or t.casefold() in missing) else t

        def yes_no(v: object) -> float:
            t = norm(v)
            return np.nan if t is None else float(t.casefold() in yes)

        return norm, yes_no

    @staticmethod
    def _numeric(s: object) -> np.ndarray:
        arr = np.asarray(s)
        if arr.dtype.kind in "fiu":
            return arr.astype("float64", copy=False)
        return np.asarray(pd.to_numeric(pd.Series(arr, dtype=object), errors="coerce"), dtype="float64")

    def _raw_clean(
        self, X: pd.DataFrame | ColumnBatch, columns: Sequence[str] | None = None, canonical: bool = False
    ) -> dict[str, np.ndarray]:
        """Clean ``columns`` (default: all roles); ``canonical`` also maps categorical
        spellings to those learned in ``fit``, in the same pass."""
        norm, yes_no = self._normalisers()
        numeric, categorical, yes_no_cols = self.roles_
        out: dict[str, np.ndarray] = {}
        order = columns if columns is not None else (*numeric, *categorical, *yes_no_cols)
        categorical, yes_no_cols = set(categorical), set(yes_no_cols)  # membership only; order above
        for col in order:
            if col in categorical:
                fn = norm
                if canonical:
                    mapping = self.canonical_.get(col, {})

                    def fn(v: object, mapping: dict[str, str] = mapping) -> str | None:
                        t = norm(v)
                        return None if t is None else mapping.get(t.casefold(), t)

                out[col] = map_unique(X[col], fn)
            elif col in yes_no_cols:
                out[col] = map_unique(X[col], yes_no, dtype=float)
            else:
                out[col] = self._numeric(X[col])
        return out

    # -- sklearn API ---------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y: object = None) -> LeadCleaner:
        X = self._fit_input(X)
        given = (list(self.numeric), list(self.categorical), list(self.yes_no))
        self.roles_ = given if any(given) else ([str(c) for c in X.columns], [], [])
        missing = [c for c in (*self.roles_[0], *self.roles_[1], *self.roles_[2]) if c not in X.columns]
        if missing:
            raise KeyError(f"LeadCleaner: input lacks column(s) {missing}")
        clean = self._raw_clean(X)
        self.canonical_: dict[str, dict[str, str]] = {}
        for col in self.roles_[1]:
            counts = pd.Series([v for v in clean[col] if v is not None], dtype=object).value_counts()
            mapping: dict[str, str] = {}
            for level in counts.index:  # most frequent first: it wins
                mapping.setdefault(str(level).casefold(), str(level))
            self.canonical_[col] = mapping
        self.clip_: dict[str, tuple[float, float]] = {}
        if self.clip_quantile is not None:
            q = float(self.clip_quantile)
            for col in self.roles_[0]:
                v = clean[col][~np.isnan(clean[col])]
                if len(v):
                    self.clip_[col] = (float(np.quantile(v, 1 - q)), float(np.quantile(v, q)))
        self.constant_: list[str] = []
        if self.drop_constant:
            for col, values in clean.items():
                vals = self._canon(col, values) if col in self.roles_[1] else values
                distinct = {v for v in vals if not is_missing(v)}
                if len(distinct) <= 1:
                    self.constant_.append(col)
        self.feature_names_out_ = [c for c in clean if c not in self.constant_]
        return self

    def _canon(self, col: str, values: object) -> np.ndarray:
        mapping = getattr(self, "canonical_", {}).get(col, {})
        return map_unique(values, lambda v: None if v is None else mapping.get(v.casefold(), v))

    def transform(self, X: pd.DataFrame | ColumnBatch) -> pd.DataFrame | ColumnBatch:
        check_is_fitted(self, "feature_names_out_")
        X = self._transform_input(X)
        out = ColumnBatch(self._raw_clean(X, self.feature_names_out_, canonical=True))
        for col, (lo, hi) in self.clip_.items():
            if col in out:
                out[col] = np.clip(out[col], lo, hi)
        return self._output(out, X)

    def unclipped(self, X: pd.DataFrame | ColumnBatch, columns: Sequence[str]) -> dict[str, np.ndarray]:
        """The numeric ``columns`` cleaned as :meth:`transform` cleans them, but not clipped:
        each lead's own value, for a person to read (the model reads the clipped one)."""
        check_is_fitted(self, "feature_names_out_")
        return self._raw_clean(X, [c for c in columns if c in self.roles_[0]])

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_out_")
        return self._renamed(self.feature_names_out_, input_features)
