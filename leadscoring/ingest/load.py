"""Reading whole exports and checking them chunk by chunk: the one reader
(:mod:`leadscoring.ingest.reader`) followed by the schema (:mod:`leadscoring.ingest.schema`),
with ids checked across chunks."""

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
from leadscoring.ingest.schema import BadRows, LeadSchema, repeated_id
from leadscoring.io import atomic_path

log = logging.getLogger(__name__)


def read_leads(
    path: str | os.PathLike[str], cfg: ProjectConfig, *, require_target: bool = True, bad_rows: BadRows | None = None
) -> pd.DataFrame:
    """Read a whole export (CSV in the configured layout, or parquet) and validate it. With
    ``bad_rows`` a row that fails validation is left out and recorded there."""
    raw = read_raw(path, cfg)
    df = LeadSchema(cfg).validate(
        raw, require_target=require_target, origin=Path(path).name, rows=row_locator(path, cfg), bad_rows=bad_rows
    )
    log.info("read %d leads x %d columns from %s", len(df), df.shape[1], path)
    return df


class IdTracker:
    """Ids must be unique across the chunks of a file (each chunk checks its own)."""

    def __init__(self, origin: str, rows: RowLocator | None) -> None:
        self.seen: set[str] = set()
        self.origin, self.rows = origin, rows

    def repeated(self, ids: np.ndarray) -> np.ndarray:
        """Which of ``ids`` an earlier chunk had."""
        return np.fromiter((x in self.seen for x in ids), dtype=bool, count=len(ids))  # (isin(set) is far slower)

    def where(self, records: Sequence[int]) -> list[str]:
        """Where the records are in the file ("line 12")."""
        return self.rows([int(r) for r in records]) if self.rows is not None else [f"row {r}" for r in records]

    def set_aside(self, ids: np.ndarray, records: Sequence[int], bad_rows: BadRows, id_column: str) -> np.ndarray:
        """Record in ``bad_rows`` the leads whose ids an earlier chunk had (the first row with
        an id keeps it, as within a chunk: :meth:`LeadSchema.validate`); returns which of
        ``ids`` they are. The one rule of a repeated id across chunks, for ``validate`` and
        ``score``."""
        again = self.repeated(ids)
        if again.any():
            repeats = [int(r) for r, a in zip(records, again, strict=True) if a]
            for record, line, lead in zip(repeats, self.where(repeats), ids[again], strict=True):
                bad_rows.add(record, line, f"{repeated_id(id_column)}: {lead!r}")
        return again

    def add(self, ids: np.ndarray, records: Sequence[int]) -> None:
        dup = self.repeated(ids)
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            where = self.where([records[i]])[0]
            raise LeadDataError(f"{self.origin}: duplicate id {ids[i]!r} ({where}) already seen earlier in the file")
        self.seen.update(ids)


def iter_valid_chunks(
    path: str | os.PathLike[str],
    cfg: ProjectConfig,
    *,
    require_target: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    bad_rows: BadRows | None = None,
) -> Iterator[pd.DataFrame]:
    """Validated chunks of an export, ids checked across chunks; memory bounded by ``chunk_rows``.
    With ``bad_rows`` a row that fails (a repeated id too) is left out and recorded there."""
    origin, rows, schema = Path(path).name, row_locator(path, cfg), LeadSchema(cfg)
    ids = IdTracker(origin, rows)
    id_col = cfg.data.id_column
    for raw in iter_raw_chunks(path, cfg, chunk_rows):
        found = BadRows() if bad_rows is not None else None  # this chunk's (``bad_rows`` may keep only a few)
        leads = schema.validate(raw, require_target=require_target, origin=origin, rows=rows, bad_rows=found)
        records = raw.index  # each lead's record, in order
        chunk_ids = leads[id_col].to_numpy(dtype=object)
        if bad_rows is not None and found is not None:
            records = raw.index.drop(found.records)
            bad_rows.extend(found)
            again = ids.set_aside(chunk_ids, records, bad_rows, id_col)
            leads, chunk_ids, records = leads[~again], chunk_ids[~again], records[~again]
        ids.add(chunk_ids, records)
        yield leads


def validate_file(
    path: str | os.PathLike[str],
    cfg: ProjectConfig,
    *,
    require_target: bool = True,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    bad_rows: BadRows | None = None,
) -> int:
    """Check a whole export with exactly the rules ``score`` applies; returns the number of
    valid leads. Without ``bad_rows`` the first bad row raises; with it every bad row is
    recorded there (as ``score`` sets them aside) and the check goes on."""
    chunks = iter_valid_chunks(path, cfg, require_target=require_target, chunk_rows=chunk_rows, bad_rows=bad_rows)
    return sum(len(c) for c in chunks)


def write_export_records(
    source: str | os.PathLike[str],
    cfg: ProjectConfig,
    ids: Sequence[str],
    dest: str | os.PathLike[str],
    *,
    drop: Sequence[str] = (),
) -> Path:
    """Write the records of the export ``source`` whose lead ids are ``ids`` (in that order)
    to ``dest`` (atomically) in the export's own layout: its separator and encoding, every
    field as the export writes it (decimal mark, thousands marks, yes/no spellings, dates), the
    columns ``drop`` left out. Reading ``dest`` with the same configuration gives the same
    leads, as ``score`` and the service would read them from the client's export. Ids are the
    schema's: the stripped text of ``data.id_column``, or with ``data.id_from_row_number`` the
    record's number in ``source`` (which a file of its own numbers afresh). A parquet export's
    values are written as CSV in the configured separator, decimal mark and encoding."""
    d = cfg.data
    raw = read_raw(source, cfg)
    raw = raw.set_axis([str(c).strip() for c in raw.columns], axis=1)
    key = pd.Index(LeadSchema(cfg).lead_ids(raw, Path(source).name, row_locator(source, cfg)))
    pos = key.get_indexer(pd.Index([str(i) for i in ids]))
    if (pos < 0).any():
        raise LeadDataError(f"{Path(source).name}: lead id {list(ids)[int(np.flatnonzero(pos < 0)[0])]!r} is not in the export")
    rows = raw.iloc[pos].drop(columns=[c for c in drop if c in raw.columns])
    with atomic_path(dest) as tmp:  # CSV text is written as read; a parquet export's numbers in the export's notation
        rows.to_csv(tmp, sep=d.separator, decimal=d.decimal, index=False, encoding=d.encoding)
    return Path(dest)
