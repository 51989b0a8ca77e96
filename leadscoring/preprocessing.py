"""Cleaning, feature-engineering and encoding transformers (scikit-learn compatible).

Every statistic (canonical spellings, clipping bounds, constant columns, frequent levels,
medians, scales) is learned in ``fit`` on training data only, so scoring a single lead
gives the same result as scoring it inside a batch, and nothing leaks from validation data.

Between steps the columns travel as a :class:`ColumnBatch` (column name → numpy array)
rather than a DataFrame: building DataFrames dominates the cost of scoring one lead.
``as_frame`` turns a batch into a DataFrame for display and analysis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError

MISSING_LEVEL = "Missing"
OTHER_LEVEL = "Other"


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


def _as_frame(X: object) -> pd.DataFrame | ColumnBatch:
    if isinstance(X, (pd.DataFrame, ColumnBatch)):
        return X
    raise TypeError(f"expected a pandas DataFrame with named columns, got {type(X).__name__}")


def _n_rows(X: pd.DataFrame | ColumnBatch) -> int:
    return X.n_rows if isinstance(X, ColumnBatch) else len(X)


def check_is_fitted(estimator: object, attribute: str) -> None:
    """scikit-learn's fitted check reduced to the one attribute that matters here (sklearn's
    own inspects every attribute and the estimator tags: 50 µs per step and call)."""
    if not hasattr(estimator, attribute):
        raise NotFittedError(f"This {type(estimator).__name__} instance is not fitted yet; call 'fit' first.")


def _is_missing(v: object) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and v != v)


def map_unique(values: object, fn: Callable[[object], object], dtype: object = object) -> np.ndarray:
    """``fn`` applied to every value, computed once per distinct value (missing → ``fn(None)``).

    Lead columns have few distinct values, so this costs one hash pass in C plus a few
    Python calls, whatever the number of leads.
    """
    arr = np.asarray(values, dtype=object)
    if len(arr) <= 64:  # a few leads (the scoring service): hashing costs more than it saves
        return np.array([fn(None if _is_missing(v) else v) for v in arr], dtype=dtype)
    codes, uniques = pd.factorize(arr, use_na_sentinel=True)
    mapped = np.array([*(fn(u) for u in uniques), fn(None)], dtype=dtype)
    return mapped[codes]


class LeadCleaner(TransformerMixin, BaseEstimator):
    """Turn validated raw columns into clean, typed model inputs.

    - placeholders (``missing_values``, e.g. ``Select``) and blanks become missing;
    - categorical spellings that differ only in case/spaces (``google``/``Google``) are
      mapped to the most frequent spelling seen in ``fit``;
    - yes/no columns become 1.0 / 0.0 (missing stays NaN);
    - numeric columns are clipped to the [1 - q, q] quantiles learned in ``fit``;
    - columns constant in ``fit`` are dropped (``drop_constant``).

    Columns not named in any role (id, target, extras) are dropped.
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
            if _is_missing(v):
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

    def _raw_clean(self, X: pd.DataFrame | ColumnBatch, columns: Sequence[str] | None = None,
                   canonical: bool = False) -> dict[str, np.ndarray]:
        """Clean ``columns`` (default: all roles); ``canonical`` also maps categorical
        spellings to those learned in ``fit``, in the same pass."""
        norm, yes_no = self._normalisers()
        categorical, yes_no_cols = set(self.categorical), set(self.yes_no)
        out: dict[str, np.ndarray] = {}
        for col in columns if columns is not None else (*self.numeric, *self.categorical, *self.yes_no):
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
        X = _as_frame(X)
        missing = [c for c in (*self.numeric, *self.categorical, *self.yes_no) if c not in X.columns]
        if missing:
            raise KeyError(f"LeadCleaner: input lacks column(s) {missing}")
        clean = self._raw_clean(X)
        self.canonical_: dict[str, dict[str, str]] = {}
        for col in self.categorical:
            counts = pd.Series([v for v in clean[col] if v is not None], dtype=object).value_counts()
            mapping: dict[str, str] = {}
            for level in counts.index:  # most frequent first: it wins
                mapping.setdefault(str(level).casefold(), str(level))
            self.canonical_[col] = mapping
        self.clip_: dict[str, tuple[float, float]] = {}
        if self.clip_quantile is not None:
            q = float(self.clip_quantile)
            for col in self.numeric:
                v = clean[col][~np.isnan(clean[col])]
                if len(v):
                    self.clip_[col] = (float(np.quantile(v, 1 - q)), float(np.quantile(v, q)))
        self.constant_: list[str] = []
        if self.drop_constant:
            for col, values in clean.items():
                vals = self._canon(col, values) if col in self.categorical else values
                distinct = {v for v in vals if not _is_missing(v)}
                if len(distinct) <= 1:
                    self.constant_.append(col)
        self.feature_names_out_ = [c for c in clean if c not in self.constant_]
        self.n_features_in_ = len(X.columns)
        return self

    def _canon(self, col: str, values: object) -> np.ndarray:
        mapping = getattr(self, "canonical_", {}).get(col, {})
        return map_unique(values, lambda v: None if v is None else mapping.get(v.casefold(), v))

    def transform(self, X: pd.DataFrame | ColumnBatch) -> ColumnBatch:
        check_is_fitted(self, "feature_names_out_")
        X = _as_frame(X)
        out = ColumnBatch(self._raw_clean(X, self.feature_names_out_, canonical=True))
        for col, (lo, hi) in self.clip_.items():
            if col in out:
                out[col] = np.clip(out[col], lo, hi)
        return out

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_out_")
        return np.asarray(self.feature_names_out_, dtype=object)


class LeadFeatures(TransformerMixin, BaseEstimator):
    """Add derived numeric features: products ``a * b`` and ratios ``a / b`` (0 when b is 0)."""

    def __init__(
        self,
        products: dict[str, tuple[str, str]] | None = None,
        ratios: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        self.products = products
        self.ratios = ratios

    def fit(self, X: pd.DataFrame, y: object = None) -> LeadFeatures:
        X = _as_frame(X)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        names = list(X.columns)
        for kind in (self.products or {}, self.ratios or {}):
            names += [n for n, (a, b) in kind.items() if a in X.columns and b in X.columns]
        self.feature_names_out_ = names
        return self

    def transform(self, X: pd.DataFrame | ColumnBatch) -> ColumnBatch:
        check_is_fitted(self, "feature_names_out_")
        X = _as_frame(X)
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
        return out[self.feature_names_out_]

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_out_")
        return np.asarray(self.feature_names_out_, dtype=object)


class ColumnSelector(TransformerMixin, BaseEstimator):
    """Keep only ``columns`` (those present; None keeps all). Used for the selected variables."""

    def __init__(self, columns: Sequence[str] | None = None) -> None:
        self.columns = columns

    def fit(self, X: pd.DataFrame, y: object = None) -> ColumnSelector:
        X = _as_frame(X)
        cols = list(X.columns) if self.columns is None else [c for c in self.columns if c in X.columns]
        self.feature_names_out_ = cols
        return self

    def transform(self, X: pd.DataFrame | ColumnBatch) -> ColumnBatch:
        check_is_fitted(self, "feature_names_out_")
        X = _as_frame(X)
        return ColumnBatch((c, np.asarray(X[c])) for c in self.feature_names_out_)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(self.feature_names_out_, dtype=object)


class LeadEncoder(TransformerMixin, BaseEstimator):
    """Model inputs as one float matrix, computed with numpy.

    - numeric: median imputation, plus a 0/1 missing indicator for every column that had
      missing values in ``fit``; standardised (mean 0, sd 1) when ``scale``;
    - categorical: levels rarer than ``rare_min_share`` in ``fit`` and unseen levels become
      ``Other``, missing becomes ``Missing``; one-hot over the grouped levels seen in ``fit``
      (a grouped level not seen in ``fit`` encodes as all zeros);
    - yes/no: missing → 0.

    ``feature_sources_`` names the raw variable behind each output column and
    ``feature_labels_`` a readable label (``ocupacion=Student``, ``score_perfil missing``).
    """

    def __init__(
        self,
        numeric: Sequence[str] = (),
        categorical: Sequence[str] = (),
        yes_no: Sequence[str] = (),
        rare_min_share: float = 0.01,
        scale: bool = True,
    ) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.yes_no = yes_no
        self.rare_min_share = rare_min_share
        self.scale = scale

    def _group_value(self, col: str, v: object) -> str:
        if _is_missing(v):
            return MISSING_LEVEL
        t = str(v)
        return t if t in self.frequent_[col] else OTHER_LEVEL

    def _group(self, col: str, values: object) -> np.ndarray:
        return map_unique(values, lambda v: self._group_value(col, v))

    def fit(self, X: pd.DataFrame | ColumnBatch, y: object = None) -> LeadEncoder:
        X = _as_frame(X)
        n = _n_rows(X)
        present = set(X.columns)
        self.num_ = [c for c in self.numeric if c in present]
        self.cat_ = [c for c in self.categorical if c in present]
        self.yn_ = [c for c in self.yes_no if c in present]
        sources, labels = [], []
        self.median_, self.mean_, self.sd_, self.indicate_ = {}, {}, {}, []
        for c in self.num_:
            v = np.asarray(X[c], dtype=float)
            med = float(np.nanmedian(v)) if np.isfinite(v).any() else 0.0
            filled = np.where(np.isnan(v), med, v)
            self.median_[c] = med
            self.mean_[c] = float(filled.mean()) if self.scale else 0.0
            sd = float(filled.std()) if self.scale else 1.0
            self.sd_[c] = sd if sd > 0 else 1.0
            sources.append(c)
            labels.append(c)
        for c in self.num_:
            if np.isnan(np.asarray(X[c], dtype=float)).any():
                self.indicate_.append(c)
                sources.append(c)
                labels.append(f"{c} missing")
        self.frequent_, self.categories_ = {}, {}
        for c in self.cat_:
            vals = [str(v) for v in np.asarray(X[c], dtype=object) if not _is_missing(v)]
            counts = pd.Series(vals, dtype=object).value_counts()
            self.frequent_[c] = set(counts[counts / max(n, 1) >= self.rare_min_share].index)
            self.categories_[c] = sorted(set(self._group(c, X[c])))
            sources += [c] * len(self.categories_[c])
            labels += [f"{c}={lvl}" for lvl in self.categories_[c]]
        sources += self.yn_
        labels += self.yn_
        self.feature_sources_, self.feature_labels_ = sources, labels
        self.n_features_in_ = len(X.columns)
        return self

    def transform(self, X: pd.DataFrame | ColumnBatch) -> np.ndarray:
        check_is_fitted(self, "feature_sources_")
        X = _as_frame(X)
        n = _n_rows(X)
        out = np.zeros((n, len(self.feature_sources_)), dtype=float)
        # Column blocks at once (one numpy call per block, not per column: this runs for every
        # lead the service scores); element by element the same arithmetic as per column.
        k = len(self.num_)
        if k:
            v = np.empty((n, k))
            for i, c in enumerate(self.num_):
                v[:, i] = np.asarray(X[c], dtype=float)
            missing = np.isnan(v)
            median = np.array([self.median_[c] for c in self.num_])
            mean = np.array([self.mean_[c] for c in self.num_])
            sd = np.array([self.sd_[c] for c in self.num_])
            out[:, :k] = (np.where(missing, median, v) - mean) / sd
            if self.indicate_:
                position = {c: i for i, c in enumerate(self.num_)}
                out[:, k:k + len(self.indicate_)] = missing[:, [position[c] for c in self.indicate_]]
        j = k + len(self.indicate_)
        if self.cat_:
            # Output column of each lead's grouped level (-1: a level not seen in fit), all
            # categorical columns first, then one assignment.
            where = np.empty((n, len(self.cat_)), dtype=np.intp)
            for i, c in enumerate(self.cat_):
                index = {lvl: j + pos for pos, lvl in enumerate(self.categories_[c])}
                where[:, i] = map_unique(X[c], lambda v, c=c, index=index: index.get(self._group_value(c, v), -1),
                                         dtype=np.intp)
                j += len(self.categories_[c])
            rows, cols = np.nonzero(where >= 0)
            out[rows, where[rows, cols]] = 1.0
        if self.yn_:
            v = np.empty((n, len(self.yn_)))
            for i, c in enumerate(self.yn_):
                v[:, i] = np.asarray(X[c], dtype=float)
            out[:, j:j + len(self.yn_)] = np.where(np.isnan(v), 0.0, v)
        return out

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        check_is_fitted(self, "feature_labels_")
        return np.asarray(self.feature_labels_, dtype=object)


def build_encoder(
    numeric: Sequence[str],
    categorical: Sequence[str],
    yes_no: Sequence[str],
    *,
    rare_min_share: float = 0.01,
    scale: bool = True,
) -> LeadEncoder:
    """The encoder used by every model pipeline (see :class:`LeadEncoder`)."""
    return LeadEncoder(list(numeric), list(categorical), list(yes_no), rare_min_share=rare_min_share, scale=scale)


def encoded_feature_sources(encoder: LeadEncoder) -> tuple[list[str], list[str]]:
    """For each output column of a fitted encoder: (source variable, readable label)."""
    return list(encoder.feature_sources_), list(encoder.feature_labels_)
