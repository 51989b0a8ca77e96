"""Checking a scores file (read by :mod:`leadscoring.serving.scores_file`) before it is pushed to the CRM: the id and score
columns present, at least one row, ids non-blank and distinct, scores whole numbers, every
other numeric score field (fit and engagement scores, probability...) a number where filled in; each
problem is a one-line :class:`LeadDataError` naming the file and its lines."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscoring.errors import LeadDataError
from leadscoring.ingest.reader import is_parquet
from leadscoring.scored_lead import VALUE_TYPES
from leadscoring.serving.scores_file import read_scores_file

SCORE_COLUMNS = ("score", "bucket", "recommended_action")


def _lines(mask: pd.Series | Any, index: pd.Index, from_file: bool) -> str:
    rows = list(index[mask][:5])
    shown = ", ".join(f"line {i + 2}" if from_file else f"row {i}" for i in rows)
    return shown + (" and more" if int(mask.sum()) > 5 else "")


def check_scores(scores: pd.DataFrame, id_column: str, origin: str = "scores", *, from_file: bool = False) -> pd.DataFrame:
    """The scores to push, checked: the id and score columns present, at least one row,
    ids non-blank and distinct, scores whole numbers, the other numeric score fields numbers
    (whole for the integer ones) where filled in. Problems raise :class:`LeadDataError`."""
    missing = [c for c in (id_column, *SCORE_COLUMNS) if c not in scores.columns]
    if missing:
        hint = " — scores files are comma-separated as written by `leadscoring score`" if from_file else ""
        raise LeadDataError(f"{origin}: missing column(s) {missing}; found {list(scores.columns)}{hint}")
    if scores.empty:
        raise LeadDataError(f"{origin}: no scores (a header but no rows)")
    ids = scores[id_column]
    blank = (ids.isna() | (ids.astype(str).str.strip() == "")).to_numpy()
    if blank.any():
        raise LeadDataError(f"{origin}: column '{id_column}' (id) is empty at {_lines(blank, scores.index, from_file)}")
    dup = ids.astype(str).duplicated(keep=False).to_numpy()
    if dup.any():
        raise LeadDataError(
            f"{origin}: duplicate id(s) {sorted(set(ids.astype(str)[dup]))[:5]} at {_lines(dup, scores.index, from_file)}"
        )
    checked = {}
    for col in [c for c in scores.columns if VALUE_TYPES.get(c) in (int, float)]:
        whole = VALUE_TYPES[col] is int
        raw = scores[col]
        values = pd.to_numeric(raw, errors="coerce").astype("float64")
        filled = (raw.notna() & (raw.astype(str).str.strip() != "")).to_numpy()
        ok = np.isfinite(values) & ((values == values.round()) if whole else True)
        bad = ~ok.to_numpy() & (filled | (col == "score"))  # a score is never empty; the others may be
        if bad.any():
            raise LeadDataError(
                f"{origin}: column '{col}' must hold {'whole numbers' if whole else 'numbers'}; found "
                f"{list(raw[bad][:5])} at {_lines(bad, scores.index, from_file)}"
            )
        checked[col] = values.astype("int64") if col == "score" else values
    return scores.assign(**checked)


def read_scores(path: str | os.PathLike[str], id_column: str = "id") -> pd.DataFrame:
    """A scores file as written by ``leadscoring score`` (comma-separated CSV, or parquet),
    ids kept as text exactly as written (read by :func:`read_scores_file`), checked for the
    push (:func:`check_scores`); problems raise a one-line :class:`LeadDataError`."""
    path = Path(path)
    return check_scores(read_scores_file(path, id_column), id_column, path.name, from_file=not is_parquet(path))
