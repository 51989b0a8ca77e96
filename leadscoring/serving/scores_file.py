"""Reading a scores file, as written by ``leadscoring score`` or notebook 10: comma-separated
CSV (every value read as text, ids kept exactly as written, an empty cell an empty text) or
parquet (its own types, ids as text). The one reader of scores files: the score history
appends them (:mod:`leadscoring.serving.history`) and the CRM push sends them
(:mod:`leadscoring.crm.scores`), each checking the columns it needs. Problems are one-line
:class:`LeadDataError` naming the file."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from leadscoring.errors import LeadDataError
from leadscoring.ingest.reader import is_parquet


def scores_file_columns(path: str | os.PathLike[str]) -> list[str]:
    """The column names of a scores file (the parquet schema, or the CSV header line)."""
    path = Path(path)
    if is_parquet(path):
        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:  # pyarrow raises many types; the message is what matters
            raise LeadDataError(f"{path}: cannot read as parquet ({exc})".splitlines()[0]) from None
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return next(csv.reader(fh), [])


def read_scores_file(
    path: str | os.PathLike[str],
    id_column: str,
    *,
    columns: Sequence[str] | None = None,
    needed_for: str | None = None,
) -> pd.DataFrame:
    """A scores file's rows: all columns, or only ``columns``. With ``needed_for`` (what the
    columns are for, e.g. ``"the score history"``), ``columns`` must all be present, else a
    one-line error naming the missing ones; without it, missing ones are left out (the
    caller checks). Ids (``id_column``) are text as written; a missing id stays missing."""
    path = Path(path)
    if not path.is_file():
        raise LeadDataError(f"{path}: file not found")
    wanted = None
    if columns is not None:
        names = scores_file_columns(path)
        missing = [c for c in columns if c not in names]
        if missing and needed_for is not None:
            raise LeadDataError(f"{path}: missing column(s) {missing} needed for {needed_for}; found {names}")
        wanted = [c for c in columns if c in names]
    if is_parquet(path):
        try:
            df = pd.read_parquet(path, columns=wanted)
        except Exception as exc:  # pyarrow raises many types; the message is what matters
            raise LeadDataError(f"{path}: cannot read as parquet ({exc})".splitlines()[0]) from None
        if id_column in df.columns:
            df[id_column] = df[id_column].map(lambda v: v if v is None or isinstance(v, str) else str(v)).astype(object)
        return df
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[], encoding="utf-8-sig", usecols=wanted)
    except pd.errors.EmptyDataError:
        raise LeadDataError(f"{path}: the file is empty (no header, no scores)") from None
    except UnicodeDecodeError as exc:
        raise LeadDataError(f"{path}: not readable as UTF-8 ({exc.reason} at byte {exc.start})") from None
    except pd.errors.ParserError as exc:
        header = path.open(encoding="utf-8-sig", errors="replace").readline()
        if "score" not in {c.strip().strip('"') for c in header.split(",")}:  # not what `score` writes
            raise LeadDataError(
                f"{path}: not a scores file (its first line has no 'score' column: {header.strip()[:80]!r}); "
                "push the file `leadscoring score` wrote"
            ) from None
        raise LeadDataError(f"{path}: malformed CSV (comma-separated expected): {exc}".splitlines()[0]) from None
