"""Validating a CRM export of leads against the configuration, and splitting it.

:func:`read_leads` reads an export through the one reader (:mod:`leadscoring.ingest.reader`)
and :func:`validate_leads` checks it against the configuration. Every problem raises a
:class:`LeadDataError` with a one-line message naming the column, the offending values
and the lines of the file where they occur.

"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from leadscoring.config import ProjectConfig
from leadscoring.errors import LeadDataError
from leadscoring.ingest.reader import DEFAULT_CHUNK_ROWS, RowLocator, iter_raw_chunks, read_raw, row_locator
from leadscoring.ingest.values import is_missing, map_unique

log = logging.getLogger(__name__)


#: How many offending values/lines an error message lists before "...".
MAX_EXAMPLES = 5


def _examples(values: Sequence[object], rows: Sequence[str]) -> str:
    shown = [f"{v!r} ({r})" for v, r in zip(values[:MAX_EXAMPLES], rows[:MAX_EXAMPLES], strict=False)]
    more = f" and {len(values) - MAX_EXAMPLES} more" if len(values) > MAX_EXAMPLES else ""
    return ", ".join(shown) + more


class _RowLabels:
    """Where a row is, for error messages, computed only for the rows a message names:
    ``rows`` maps record numbers (the frame's index) to labels such as "line 7"."""

    def __init__(self, index: pd.Index, rows: RowLocator | None) -> None:
        self.index = np.asarray(index)
        self.rows = rows

    def __getitem__(self, mask: np.ndarray) -> list[str]:
        picked = self.index[mask][: MAX_EXAMPLES + 1]
        return self.rows([int(i) for i in picked]) if self.rows is not None else [f"row {i}" for i in picked]


def _strip(v: object) -> str | None:
    """Stripped text; None for missing or blank."""
    if is_missing(v):
        return None
    t = str(v).strip()
    return t or None


def _blank(s: pd.Series) -> pd.Series:
    return s.isna() | (s.astype("string").str.strip() == "")


def validate_leads(
    df: pd.DataFrame,
    cfg: ProjectConfig,
    *,
    require_target: bool = True,
    origin: str = "input",
    rows: RowLocator | None = None,
) -> pd.DataFrame:
    """Check ``df`` against the configured layout and return a typed copy.

    Returns the id as string, numeric columns as float, categorical and yes/no columns as
    stripped strings (blank → missing; placeholders such as ``Select`` are kept for the
    cleaner), and the target (if present) as 0/1 integers. Columns outside the
    configuration are dropped if ``data.allow_extra_columns`` is true, else rejected.
    ``rows`` names the records in messages (default: "row <index>").
    """
    d = cfg.data
    roles = d.columns
    if df.shape[0] == 0:
        raise LeadDataError(f"{origin}: no leads (the file has a header but no rows)")
    df = df.set_axis([str(c).strip() for c in df.columns], axis=1)  # copy-on-write: no data copied
    expected = [d.id_column, *roles.all]
    missing = [c for c in expected if c not in df.columns]
    if require_target and d.target_column not in df.columns:
        missing.append(d.target_column)
    if missing:
        raise LeadDataError(f"{origin}: missing required column(s) {missing}; found {list(df.columns)}")
    allowed = {*expected, d.target_column}
    extra = [c for c in df.columns if c not in allowed]
    if extra and not d.allow_extra_columns:
        raise LeadDataError(
            f"{origin}: unexpected column(s) {extra}; add them to the configuration's columns "
            "or set data.allow_extra_columns: true"
        )
    dupes = [c for c in df.columns[df.columns.duplicated()]]
    if dupes:
        raise LeadDataError(f"{origin}: column(s) {dupes} appear more than once")
    keep_target = d.target_column in df.columns and require_target
    out = pd.DataFrame(index=df.index)
    labels = _RowLabels(df.index, rows)

    ids = df[d.id_column]
    blank = _blank(ids).to_numpy()
    if blank.any():
        raise LeadDataError(f"{origin}: column '{d.id_column}' (id) is empty at {', '.join(labels[blank][:MAX_EXAMPLES])}")
    ids = ids.astype("string").str.strip()
    ids = ids.str.replace(r"\.0$", "", regex=True) if pd.api.types.is_float_dtype(df[d.id_column]) else ids
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any():
        raise LeadDataError(
            f"{origin}: duplicate id(s) in column '{d.id_column}': "
            + _examples(list(ids[dup]), labels[dup])
        )
    out[d.id_column] = ids.astype(object)

    for col in roles.numeric:
        out[col] = _to_numeric(df[col], col, d.decimal, d.thousands, origin, labels)
        lo, hi = d.ranges.get(col, (None, None))
        outside = ((out[col] < lo) if lo is not None else False) | ((out[col] > hi) if hi is not None else False)
        outside = np.asarray(outside, dtype=bool) & out[col].notna().to_numpy()
        if outside.any():
            raise LeadDataError(
                f"{origin}: column '{col}' has value(s) outside [{lo}, {hi}]: "
                + _examples(list(out[col][outside]), labels[outside])
            )
    for col in roles.categorical:
        out[col] = map_unique(df[col], _strip)
    missing_tokens = {m.casefold() for m in d.missing_values}
    known = {v.casefold() for v in (*d.yes_values, *d.no_values)} | missing_tokens
    for col in roles.yes_no:
        s = map_unique(df[col], _strip)
        bad = map_unique(s, lambda v: v is not None and v.casefold() not in known, dtype=bool)
        if bad.any():
            raise LeadDataError(
                f"{origin}: column '{col}' (yes/no) has value(s) outside yes_values/no_values: "
                + _examples(list(s[bad]), labels[bad])
            )
        out[col] = s

    if keep_target:
        pos, neg = d.positive_value, d.negative_value

        def target_text(v: object) -> str | None:
            t = _strip(v)
            return t[:-2] if t is not None and t.endswith(".0") else t

        t = map_unique(df[d.target_column], target_text)
        bad = map_unique(t, lambda v: v not in (pos, neg), dtype=bool)
        if bad.any():
            raise LeadDataError(
                f"{origin}: target column '{d.target_column}' must be {pos!r} or {neg!r}; found "
                + _examples(list(t[bad]), labels[bad])
            )
        out[d.target_column] = (t == pos).astype("int64")
    return out.reset_index(drop=True)


_NOT_A_NUMBER = float("inf")  # marker for text that is not a number (inf itself is refused too)


def _to_numeric(s: pd.Series, col: str, decimal: str, thousands: str | None, origin: str,
                labels: _RowLabels) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.to_numpy(dtype="float64")

    def parse(v: object) -> float:
        t = _strip(v)
        if t is None:
            return np.nan
        if thousands:
            t = t.replace(thousands, "")
        if decimal != ".":
            t = t.replace(decimal, ".")
        try:
            x = float(t)
        except ValueError:
            return _NOT_A_NUMBER
        return x if np.isfinite(x) else _NOT_A_NUMBER

    num = map_unique(s, parse, dtype=float)
    bad = num == _NOT_A_NUMBER
    if bad.any():
        raise LeadDataError(
            f"{origin}: column '{col}' must be numeric but has text value(s): "
            + _examples(list(np.asarray(s, dtype=object)[bad]), labels[bad])
        )
    return num


def read_leads(path: str | os.PathLike[str], cfg: ProjectConfig, *, require_target: bool = True) -> pd.DataFrame:
    """Read a whole export (CSV in the configured layout, or parquet) and validate it."""
    raw = read_raw(path, cfg)
    df = validate_leads(raw, cfg, require_target=require_target, origin=Path(path).name, rows=row_locator(path, cfg))
    log.info("read %d leads x %d columns from %s", len(df), df.shape[1], path)
    return df


class IdTracker:
    """Ids must be unique across the chunks of a file (each chunk checks its own)."""

    def __init__(self, origin: str, rows: RowLocator | None) -> None:
        self.seen: set[str] = set()
        self.origin, self.rows = origin, rows

    def add(self, ids: np.ndarray, records: Sequence[int]) -> None:
        dup = np.fromiter((x in self.seen for x in ids), dtype=bool, count=len(ids))  # (isin(set) is far slower)
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            where = self.rows([int(records[i])])[0] if self.rows is not None else f"row {records[i]}"
            raise LeadDataError(f"{self.origin}: duplicate id {ids[i]!r} ({where}) already seen earlier in the file")
        self.seen.update(ids)


def iter_valid_chunks(path: str | os.PathLike[str], cfg: ProjectConfig, *, require_target: bool = False,
                      chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """Validated chunks of an export, ids checked across chunks; memory bounded by ``chunk_rows``."""
    origin, rows = Path(path).name, row_locator(path, cfg)
    ids = IdTracker(origin, rows)
    for raw in iter_raw_chunks(path, cfg, chunk_rows):
        leads = validate_leads(raw, cfg, require_target=require_target, origin=origin, rows=rows)
        ids.add(leads[cfg.data.id_column].to_numpy(dtype=object), raw.index)
        yield leads


def validate_file(path: str | os.PathLike[str], cfg: ProjectConfig, *, require_target: bool = True,
                  chunk_rows: int = DEFAULT_CHUNK_ROWS) -> int:
    """Check a whole export with exactly the rules ``score`` applies; returns the number of leads."""
    return sum(len(c) for c in iter_valid_chunks(path, cfg, require_target=require_target, chunk_rows=chunk_rows))

