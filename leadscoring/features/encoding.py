"""Encoding clean columns as one float matrix (:class:`LeadEncoder`): median imputation and
missing indicators, rare levels grouped, one-hot categories, yes/no as 0/1.

Every statistic (frequent levels, medians, scales) is learned in ``fit`` on training data
only, so scoring a single lead gives the same result as scoring it inside a batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from leadscoring.features.columns import ColumnBatch, LeadTransformer, n_rows
from leadscoring.ingest.values import is_missing, map_unique

MISSING_LEVEL = "Missing"


OTHER_LEVEL = "Other"


class LeadEncoder(LeadTransformer):
    """Model inputs as one float matrix, computed with numpy.

    - numeric: median imputation, plus a 0/1 missing indicator for every column that had
      missing values in ``fit``; standardised (mean 0, sd 1) when ``scale``;
    - categorical: levels rarer than ``rare_min_share`` in ``fit`` and unseen levels become
      ``Other``, missing becomes ``Missing``; one-hot over the grouped levels seen in ``fit``
      (a grouped level not seen in ``fit`` encodes as all zeros);
    - yes/no: missing → 0.

    ``feature_sources_`` names the raw variable behind each output column,
    ``feature_labels_`` a readable label (``job=Student``, ``visits missing``) and
    ``output_mean_`` each output column's mean over the ``fit`` rows (the average lead, from
    which a linear model's per-lead contributions are measured).
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
        if is_missing(v):
            return MISSING_LEVEL
        t = str(v)
        return t if t in self.frequent_[col] else OTHER_LEVEL

    def _group(self, col: str, values: object) -> np.ndarray:
        return map_unique(values, lambda v: self._group_value(col, v))

    def fit(self, X: pd.DataFrame | ColumnBatch, y: object = None) -> LeadEncoder:
        X = self._fit_input(X)
        n = n_rows(X)
        present = set(X.columns)
        numeric = self.numeric if (self.numeric or self.categorical or self.yes_no) else [str(c) for c in X.columns]
        self.num_ = [c for c in numeric if c in present]
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
            vals = [str(v) for v in np.asarray(X[c], dtype=object) if not is_missing(v)]
            counts = pd.Series(vals, dtype=object).value_counts()
            # a dict as an ordered set: a set's order (so the pickled model's bytes and its
            # SHA-256) would change with each process's string hashing
            self.frequent_[c] = dict.fromkeys(frequent_levels(counts, n, self.rare_min_share))
            self.categories_[c] = sorted(set(self._group(c, X[c])))
            sources += [c] * len(self.categories_[c])
            labels += [f"{c}={lvl}" for lvl in self.categories_[c]]
        sources += self.yn_
        labels += self.yn_
        self.feature_sources_, self.feature_labels_ = sources, labels
        self.output_mean_ = self.transform(X).mean(axis=0) if n else np.zeros(len(sources))
        return self

    def transform(self, X: pd.DataFrame | ColumnBatch) -> np.ndarray:
        check_is_fitted(self, "feature_sources_")
        X = self._transform_input(X)
        n = n_rows(X)
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
                out[:, k : k + len(self.indicate_)] = missing[:, [position[c] for c in self.indicate_]]
        j = k + len(self.indicate_)
        if self.cat_:
            # Output column of each lead's grouped level (-1: a level not seen in fit), all
            # categorical columns first, then one assignment.
            where = np.empty((n, len(self.cat_)), dtype=np.intp)
            for i, c in enumerate(self.cat_):
                index = {lvl: j + pos for pos, lvl in enumerate(self.categories_[c])}
                where[:, i] = map_unique(X[c], lambda v, c=c, index=index: index.get(self._group_value(c, v), -1), dtype=np.intp)
                j += len(self.categories_[c])
            rows, cols = np.nonzero(where >= 0)
            out[rows, where[rows, cols]] = 1.0
        if self.yn_:
            v = np.empty((n, len(self.yn_)))
            for i, c in enumerate(self.yn_):
                v[:, i] = np.asarray(X[c], dtype=float)
            out[:, j : j + len(self.yn_)] = np.where(np.isnan(v), 0.0, v)
        return out

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        check_is_fitted(self, "feature_labels_")
        renamed = self._renamed(self.feature_sources_, input_features)
        return np.asarray(
            [new + label[len(src) :] for src, new, label in zip(self.feature_sources_, renamed, self.feature_labels_, strict=True)],
            dtype=object,
        )


def frequent_levels(counts: pd.Series, n: int, rare_min_share: float) -> list[str]:
    """The levels (``counts``: leads per level, of ``n`` leads) common enough to be their own
    input, sorted; the rarer ones are grouped as ``Other``. The one rule of the encoder and of
    the variable-selection evidence."""
    return sorted(counts[counts / max(n, 1) >= rare_min_share].index)


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
