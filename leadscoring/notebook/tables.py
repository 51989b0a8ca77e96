"""Tables a person reads: every table a notebook shows goes through :func:`show`.

A raw ``DataFrame`` prints pandas' 0..n index, ``0.2427`` for a 24 % share, ``3.549e+04``,
``NaN`` and the configured column names. :func:`show` returns a pandas ``Styler`` (rendered
the same in JupyterLab and in the run's HTML) with:

- the configured labels (``data.labels``) instead of column names, in the headers and in
  the cells of columns that hold variable names (``variable``, ``a``/``b`` of a pair...);
- shares and rates as ``24 %``, counts with thousands separators, other numbers with a few
  significant digits and never in scientific notation, ``—`` for a missing value, all in the
  configuration's number style (``report.decimal_mark``/``thousands_separator``, set by
  ``setup``; the formatters are :mod:`leadscoring.formats`, re-exported here);
- no index column unless it means something (``index=True``);
- a caption saying what the table is.

Which columns are percentages is read from their names (``rate``, ``share``, ``pct``,
``percent``, ``gain``, ``conversion``...) unless ``percent=`` says so explicitly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from leadscoring.formats import MISSING, count, number, percent

__all__ = ["MISSING", "count", "header", "number", "percent", "readable_frame", "show"]

#: Column names read as a share or rate (formatted as a percentage).
PERCENT_NAME = re.compile(
    r"rate|share|pct|percent|conversion|converted|gain|coverage|reached|of_leads|(?<!average_)precision|recall", re.I
)
#: Column names whose cells are variable (column) names, shown as their labels.
VARIABLE_COLUMNS = ("variable", "variables", "a", "b", "column", "field", "feature", "source")
#: Column names that are counts even when stored as floats.
COUNT_NAME = re.compile(
    r"^(n|count|leads|rows|size|converted_leads|conversions|n_.*|.*_count|.*_leads|.*_rows|.*_conversions)$", re.I
)


def _is_share(s: pd.Series) -> bool:
    vals = pd.to_numeric(s, errors="coerce").dropna()
    return bool(len(vals)) and bool(((vals >= 0) & (vals <= 1)).all())


def _labeller(labels: Mapping[str, str] | None) -> Callable[[Any], Any]:
    """A function giving text with each configured column name that has a label replaced by
    the label, as a whole word (longest names first, so a name inside a longer one is left
    alone); anything but text is returned as it is."""
    labels = dict(labels or {})
    names = sorted((n for n in labels if n and labels[n] != n), key=len, reverse=True)
    if not names:
        return lambda value: value
    pattern = re.compile(r"(?<![\w.])(" + "|".join(re.escape(n) for n in names) + r")(?![\w])")

    def relabel(value: Any) -> Any:
        return pattern.sub(lambda m: labels[m.group(1)], value) if isinstance(value, str) else value

    return relabel


def label_names_in(text: str, labels: Mapping[str, str] | None) -> str:
    """``text`` (a generated sentence or markdown, or a cell naming variables such as ``a; b``)
    with each configured column name that has a label replaced by the label, as a whole word."""
    return _labeller(labels)(text)


def readable_frame(df: pd.DataFrame, labels: Mapping[str, str] | None = None) -> pd.DataFrame:
    """``df`` with labels for column names and for variable names in cells, and headers in
    plain words (``roc_auc_mean`` → ``ROC-AUC mean``); values unchanged."""
    labels = dict(labels or {})
    relabel = _labeller(labels)
    out = df.copy()
    for col in out.columns:
        if str(col).lower() in VARIABLE_COLUMNS and not pd.api.types.is_numeric_dtype(out[col]):
            out[col] = out[col].map(relabel)
    if not pd.api.types.is_numeric_dtype(out.index):
        out.index = [relabel(v) for v in out.index]
    out.columns = [header(c, labels) for c in out.columns]
    return out


_WORDS = {
    **{"roc auc": "ROC-AUC", "auc": "AUC", "ari": "ARI", "iv": "IV", "woe": "WoE", "pct": "%", "se": "SE", "std": "SD"},
    **{"ml": "ML", "tp": "TP", "fp": "FP", "fn": "FN", "tn": "TN"},  # the model, a confusion matrix's cells
}


def header(name: Any, labels: Mapping[str, str] | None = None) -> str:
    """A column header in plain words: the configured label of a variable, else the name
    with ``_`` as spaces and known abbreviations spelled (``roc_auc_mean`` → ``ROC-AUC mean``)."""
    text = str(name)
    if labels and text in labels:
        return labels[text]
    words = re.sub(r"(\d)pct\b", r"\1 %", text.replace("_", " ").strip())  # gain_at_30pct: "gain at 30 %"
    for short, long in _WORDS.items():
        words = re.sub(rf"\b{re.escape(short)}\b", long, words)
    return words[:1].upper() + words[1:] if words else words


def show(
    df: pd.DataFrame,
    caption: str,
    labels: Mapping[str, str] | None = None,
    *,
    percent_columns: Iterable[str] | None = None,
    count_columns: Iterable[str] = (),
    text_columns: Iterable[str] = (),
    index: bool = False,
    max_rows: int | None = 60,
) -> Styler:
    """``df`` as a readable table (see the module's docstring): ``labels`` are the
    configuration's (``cfg.data.labels``); ``percent_columns`` overrides which columns are
    shares (0-1); ``count_columns`` adds counts; ``text_columns`` are shown as they are;
    ``index=True`` keeps a meaningful index (its values labelled); at most ``max_rows`` rows."""
    labels = dict(labels or {})
    frame = df.head(max_rows) if max_rows else df
    if percent_columns is None:
        shares = {c for c in frame.columns if PERCENT_NAME.search(str(c)) and _is_share(frame[c])}
    else:
        shares = set(percent_columns)
    counts = set(count_columns) | {c for c in frame.columns if COUNT_NAME.match(str(c)) and pd.api.types.is_numeric_dtype(frame[c])}
    texts = set(text_columns)
    formats: dict[str, Any] = {}
    for c in frame.columns:
        if c in texts:
            continue
        if c in shares:
            formats[c] = percent
        elif c in counts:
            formats[c] = count
        elif not pd.api.types.is_string_dtype(frame[c]) or frame[c].dtype == object:
            formats[c] = lambda v: number(v) if isinstance(v, int | float | np.integer | np.floating) or v is None else str(v)
    readable = readable_frame(frame, labels)
    renamed = dict(zip(frame.columns, readable.columns, strict=True))
    styler = readable.style.format({renamed[c]: f for c, f in formats.items()}, na_rep=MISSING)
    if not index:
        styler = styler.hide(axis="index")
    styler = styler.set_caption(caption).set_table_styles(
        [
            {"selector": "caption", "props": "caption-side: top; text-align: left; font-weight: 600; padding: 4px 0;"},
            {"selector": "th", "props": "text-align: left;"},
        ]
    )
    return styler
