"""The score history: every production scoring's scores (``lead_id`` text, ``score`` int16,
``model_version`` text, ``scored_at`` UTC timestamp in µs, the other fields of a scored lead
declared ``history=`` in :mod:`leadscoring.scored_lead`, such as ``experiment_group``, then
``job_id`` text) and the lead's
input as scored (``inputs``: compact JSON, :mod:`leadscoring.serving.inputs`), so each lead's
previous score and trend (improving / steady / declining / new) can be shown, and a retrain
learns from the fields the lead had when it was scored. (The CRM outcomes that come back are
the *outcome history*, kept elsewhere.) Parquet is columnar: a reader of scores reads only
their columns, never the inputs.

Storage: a folder of parquet files read as one data set, written only by this module
(:func:`append_scores`, :func:`append_scorings`, :func:`append_scores_file`,
:func:`append_run_scores`):

- ``part-<ns>-<job>-<tag>.parquet``: one per append of a scoring job, written atomically
  (temporary file, then rename) under a new name, so an append never reads nor rewrites the
  history (its cost does not grow with the history) and concurrent appends need no lock
  (no ``fcntl``: it works on Windows). ``<ns>`` is the time of the append (file-name order is
  append order), ``<job>`` a digest of the job id, ``<tag>`` random.
- ``compacted-<ns>-<tag>.parquet``: written by :func:`compact` (``leadscoring history
  compact``), occasionally, from every file it listed; its metadata names the files it
  replaces, which readers ignore from the moment it appears, so a reader never sees a row
  twice nor loses one, and a part written while compacting (not listed) stays as it is.

Each appended scoring carries its job's identity (``job_id``): a row already in the history
with the same lead, model version, time and job (a retried append) is not appended again,
while two jobs scoring the same leads in the same second are both kept. Only the job's own
files are read to tell (an already compacted job is looked for in the compacted file).
Histories written before ``job_id`` existed still read: their rows have none (null), so each
counts as a job of its own; parts written before ``inputs`` existed read with null inputs.

Where the folder is (:func:`history_folder`): ``paths.score_history`` names it; a path ending
in ``.parquet`` (the single-file history of earlier versions, e.g.
``05_Resultados/score_history.parquet``) names the folder of the same stem beside it
(``05_Resultados/score_history/``). A single-file history found there is read where it is by
readers, and moved into the folder, whole and unchanged, by the first append or compaction
(:func:`migrate`), then compacted once (a one-time cost of the size of the history) so that
its jobs are known."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from leadscoring.errors import LeadDataError
from leadscoring.io import atomic_path, exclusive_lock
from leadscoring.scored_lead import history_fields
from leadscoring.serving.inputs import INPUTS_COLUMN, INPUTS_FILE_SCHEMA, inputs_file_for
from leadscoring.serving.scores_file import read_scores_file, scores_file_columns

log = logging.getLogger(__name__)

T = TypeVar("T")

TRENDS = ("improving", "steady", "declining", "new")

#: The score columns a scoring keeps (declared in :mod:`leadscoring.scored_lead`), then the job
#: and the lead's input as scored.
SCHEMA = pa.schema([*history_fields(), ("job_id", pa.string()), (INPUTS_COLUMN, pa.string())])

#: The columns a reader of scores reads (everything but the inputs).
SCORE_COLUMNS = tuple(n for n in SCHEMA.names if n != INPUTS_COLUMN)

STAMP_COLUMNS = ("model_version", "scored_at")

#: Columns a history file may lack (written before they existed): read as nulls. Only the
#: lead, score, model version and time are always there; ``job_id``, ``inputs`` and any score
#: field declared ``history=`` later (:mod:`leadscoring.scored_lead`) may not be.
OPTIONAL_COLUMNS = frozenset(SCHEMA.names) - {"lead_id", "score", "model_version", "scored_at"}

#: What identifies one row: a row with the same values is the same scoring appended again.
ROW_KEY = ("lead_id", "scored_at", "model_version", "job_id")

PART_PREFIX = "part-"
COMPACTED_PREFIX = "compacted-"
#: Suffixes of a single-file history of earlier versions (and of a configured path naming one).
LEGACY_SUFFIXES = (".parquet", ".pq")
#: In the name of a single-file history moved into the folder (a compacted file without metadata).
LEGACY_TAG = "-legacy-"
#: Metadata of a compacted file: the files it replaces, and the digests of the jobs it holds.
_REPLACES_KEY = b"leadscoring.replaces"
_JOBS_KEY = b"leadscoring.jobs"
#: The compaction's lock file in the folder (hidden: not part of the data set).
COMPACTION_LOCK = ".compaction.lock"
#: A compaction lock older than this (seconds) is taken to be left by a compaction that died.
STALE_COMPACTION_SECONDS = 60 * 60

#: Rows per row group of a history file (a compaction holds one at a time; a reader of some
#: leads skips the row groups none of them is in).
ROW_GROUP_ROWS = 262_144

#: How history files are written (:func:`_write`): the inputs (JSON, distinct per row)
#: compressed with zstd and without a dictionary, the scores as parquet writes them by default.
_WRITE_OPTIONS: dict[str, object] = {
    "compression": {n: ("zstd" if n == INPUTS_COLUMN else "snappy") for n in SCHEMA.names},
    "use_dictionary": [n for n in SCHEMA.names if n != INPUTS_COLUMN],
}


def new_job_id() -> str:
    """A new scoring job's identity (random: unique across processes and machines)."""
    return uuid.uuid4().hex


_SMALL_LOOKUP = 32  # up to this many ids, look them up in a dict (one web request) rather than an index


def trends(scores: np.ndarray, previous: np.ndarray, points: int) -> np.ndarray:
    """Each lead's trend (:data:`TRENDS`): ``new`` when ``previous`` is NaN, ``improving`` /
    ``declining`` when the score rose / fell by at least ``points``, else ``steady``."""
    now = np.asarray(scores, dtype="float64")
    before = np.asarray(previous, dtype="float64")
    if now.shape != before.shape:
        raise ValueError(f"trends: {now.size} scores but {before.size} previous scores")
    delta = now - before
    if now.size <= 8:  # one lead or a few (the service): the same rule without np.select's set-up
        return np.array(
            [
                "new" if b != b else "improving" if d >= points else "declining" if d <= -points else "steady"
                for b, d in zip(before.tolist(), delta.tolist(), strict=True)
            ],
            dtype=object,
        )
    return np.select([np.isnan(before), delta >= points, delta <= -points], ["new", "improving", "declining"], "steady").astype(
        object
    )


def scores_of(latest: pd.Series, ids: np.ndarray | Sequence[str]) -> np.ndarray:
    """Each id's score in ``latest`` (lead id -> score) as float64, NaN for an id not in it."""
    pos = latest.index.get_indexer(pd.Index(np.asarray(ids, dtype=object).astype(str)))
    return np.where(pos >= 0, latest.to_numpy(dtype="float64")[pos] if len(latest) else np.nan, np.nan)


@dataclass
class _Snapshot:
    """The latest score per lead in the history as listed (``names``: every file listed,
    ``live``: those read; ``by_id``: the latest scores as a dict, for small lookups)."""

    key: tuple[str, ...] | None
    names: frozenset[str] = frozenset()
    live: tuple[str, ...] = ()
    latest: pd.Series = field(default_factory=lambda: _empty_latest())
    at: pd.Series = field(default_factory=lambda: _empty_at())
    by_id: dict[str, float] | None = None


def _empty_latest() -> pd.Series:
    return pd.Series(np.empty(0, dtype="int16"), index=pd.Index([], dtype="str", name="lead_id"), name="score")


def _empty_at() -> pd.Series:
    return pd.Series(np.empty(0, dtype="int64"), index=pd.Index([], dtype="str", name="lead_id"), name="scored_at")


def history_folder(path: str | os.PathLike[str]) -> Path:
    """The score history's folder for ``paths.score_history``: the path itself, or for a path
    ending in ``.parquet`` / ``.pq`` that is not a folder, the folder of its stem beside it."""
    p = Path(path)
    if p.suffix.lower() in LEGACY_SUFFIXES and not p.is_dir():
        return p.with_suffix("")
    return p


def history_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files a reader of the score history at ``path`` reads now, in append order (the
    live files, then a single-file history not moved in yet), for a reader that queries them
    as one data set itself (the monitoring report, in DuckDB). A compaction may remove a file
    once it is listed: such a reader lists again when one is gone, as :func:`read_history` does."""
    return _listed(history_folder(path))[1]


def _legacy_files(folder: Path) -> list[Path]:
    """Single-file histories of earlier versions beside ``folder`` (``<folder>.parquet``)."""
    return [p for p in (folder.with_name(folder.name + s) for s in LEGACY_SUFFIXES) if p.is_file()]


def migrate(path: str | os.PathLike[str]) -> list[Path]:
    """Move a single-file score history of earlier versions (``<folder>.parquet``, with or
    without ``job_id``) into the folder, whole and unchanged, as a compacted file (one rename:
    nothing is lost; concurrent migrations move it once), then :func:`compact` the folder once
    so the jobs it holds are recorded. Its ``.lock`` file is removed. Returns the files moved;
    one that cannot be moved (open elsewhere, on Windows) is left and read where it is until a
    later migration moves it."""
    folder = history_folder(path)
    moved = []
    for legacy in _legacy_files(folder):
        folder.mkdir(parents=True, exist_ok=True)
        try:
            st = legacy.stat()
            dest = folder / f"{COMPACTED_PREFIX}{0:020d}{LEGACY_TAG}{st.st_mtime_ns}-{uuid.uuid4().hex[:8]}.parquet"
            os.replace(legacy, dest)
        except FileNotFoundError:
            continue  # another process moved it
        except OSError as exc:
            log.warning("score history: %s not moved into %s yet (%s); read where it is", legacy, folder, exc)
            continue
        with contextlib.suppress(OSError):
            legacy.with_name(legacy.name + ".lock").unlink(missing_ok=True)
        log.info("score history: single-file history %s moved into %s as %s", legacy, folder, dest.name)
        moved.append(dest)
    if moved:  # once: record the jobs it holds, so a retried append of one of them is told without reading it
        try:
            compact(folder)
        except LeadDataError as exc:
            log.warning("score history %s: not compacted after the migration (%s)", folder, exc)
    return moved


def _listing(folder: Path) -> list[str]:
    """The data files of the folder, in order (compacted files first, then parts by append
    time); hidden files (temporary files, the lock) are not data."""
    try:
        with os.scandir(folder) as it:
            names = [e.name for e in it if e.name.endswith(".parquet") and not e.name.startswith((".", "_"))]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(names)


_META: dict[str, tuple[frozenset[str], frozenset[str]]] = {}  # compacted file -> (replaces, jobs); files never change
_META_LOCK = threading.Lock()


def _compacted_meta(path: Path) -> tuple[frozenset[str], frozenset[str]]:
    """The files a compacted file replaces and the digests of the jobs it holds (read once)."""
    key = str(path)
    with _META_LOCK:
        if key in _META:
            return _META[key]
    try:
        meta = pq.read_schema(path).metadata or {}
    except (pa.ArrowException, ValueError) as exc:
        raise LeadDataError(f"{path}: not a readable score history file ({str(exc).splitlines()[0]})") from exc
    found = (frozenset(json.loads(meta.get(_REPLACES_KEY, b"[]"))), frozenset(json.loads(meta.get(_JOBS_KEY, b"[]"))))
    with _META_LOCK:
        _META[key] = found
        if len(_META) > 4096:
            _META.pop(next(iter(_META)))
    return found


def _live(folder: Path, names: Sequence[str]) -> list[str]:
    """The files to read: those listed that no compacted file listed replaces."""
    replaced: set[str] = set()
    for n in names:
        if n.startswith(COMPACTED_PREFIX):
            replaced |= _compacted_meta(folder / n)[0]
    return [n for n in names if n not in replaced]


def _job_key(job_id: str) -> str:
    """The digest of a job id that names its parts."""
    return hashlib.blake2b(job_id.encode("utf-8"), digest_size=8).hexdigest()


def _part_job(name: str) -> str | None:
    """The job digest in a part's name, None for a compacted file."""
    bits = name.split("-")
    return bits[2] if name.startswith(PART_PREFIX) and len(bits) == 4 else None


def _conformed(table: pa.Table, present: set[str], columns: Sequence[str]) -> pa.Table:
    """History rows read from a file with the columns ``present``, as ``columns`` in the
    history's types: an optional column the file lacks (:data:`OPTIONAL_COLUMNS`) as nulls."""
    for name in columns:
        if name not in present and name in OPTIONAL_COLUMNS:
            table = table.append_column(SCHEMA.field(name), pa.nulls(table.num_rows, SCHEMA.field(name).type))
    return table.select(list(columns)).cast(pa.schema([SCHEMA.field(n) for n in columns]))


def _unreadable(source: Path, exc: BaseException) -> LeadDataError:
    return LeadDataError(f"{source}: not a readable score history file ({str(exc).splitlines()[0]})")


@contextlib.contextmanager
def _reading(source: Path) -> Iterator[None]:
    """Reading one history file: a file a compaction has just removed stays
    ``FileNotFoundError`` (its reader lists the files again, :func:`relisted`); any other
    failure is a one-line :class:`LeadDataError` naming the file."""
    try:
        yield
    except FileNotFoundError:
        raise
    except (pa.ArrowException, KeyError, ValueError, OSError) as exc:
        raise _unreadable(source, exc) from exc


def _wanted(columns: Sequence[str], present: set[str]) -> list[str]:
    """The ``columns`` to read from a file holding the ``present`` ones: an optional column a
    file of an earlier version lacks is left out (and read as null by :func:`_conformed`)."""
    return [n for n in columns if n in present or n not in OPTIONAL_COLUMNS]


def _read_file(source: Path, columns: Sequence[str] = tuple(SCHEMA.names)) -> pa.Table:
    """The ``columns`` of one history file, in the history's types (:func:`_conformed`); only
    those columns are read."""
    with _reading(source):
        file = pq.ParquetFile(source)
        present = set(file.schema_arrow.names)
        return _conformed(file.read(columns=_wanted(columns, present)), present, columns)


def _file_batches(source: Path) -> Iterator[pa.Table]:
    """Every column of one history file (:data:`SCHEMA`), :data:`ROW_GROUP_ROWS` rows at a time."""
    with _reading(source):
        file = pq.ParquetFile(source)
        present = set(file.schema_arrow.names)
        wanted = _wanted(SCHEMA.names, present)
        batches = file.iter_batches(batch_size=ROW_GROUP_ROWS, columns=wanted)
        for batch in batches:
            yield _conformed(pa.Table.from_batches([batch]), present, SCHEMA.names)


def _read_files(paths: Sequence[Path], columns: Sequence[str]) -> pa.Table:
    tables = [_read_file(p, columns) for p in paths]
    return pa.concat_tables(tables) if tables else pa.schema([SCHEMA.field(n) for n in columns]).empty_table()


def _listed(folder: Path) -> tuple[list[str], list[Path]]:
    """Every data file listed, and the paths to read (live files, then any single-file history
    not moved in yet: a reader reads it where it is and moves nothing, so a dry run or a
    report writes nothing)."""
    names = _listing(folder)
    return names, [*(folder / n for n in _live(folder, names)), *_legacy_files(folder)]


#: How many times a reader lists the history's files again when a compaction removed one it
#: had just listed.
LISTING_ATTEMPTS = 5


def relisted(read: Callable[[], T]) -> T:
    """``read()`` (which lists the history's files and reads them), done again when a compaction
    removed a file it had just listed (``FileNotFoundError``), up to :data:`LISTING_ATTEMPTS`
    times; the last error is raised."""
    for attempt in range(LISTING_ATTEMPTS):
        try:
            return read()
        except FileNotFoundError:
            if attempt == LISTING_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def read_history(path: str | os.PathLike[str], columns: Sequence[str] = tuple(SCHEMA.names)) -> pa.Table:
    """The whole score history at ``path`` (see :func:`history_folder`): its ``columns``, in
    append order (empty when there is none yet). Only the columns asked for are read: a
    reader of scores leaves out ``inputs``."""
    folder = history_folder(path)
    return relisted(lambda: _read_files(_listed(folder)[1], columns))


def read_history_tail(
    path: str | os.PathLike[str], columns: Sequence[str], rows: int, keep: Callable[[pa.Table], pa.Array] | None = None
) -> pa.Table:
    """The last ``rows`` rows of the score history at ``path`` (in append order) that ``keep``
    selects (a boolean mask of a table of ``columns``; default: every row), read row group by
    row group from the newest back until that many are found: a check of the latest scorings
    costs their size, not the history's."""
    folder = history_folder(path)

    def read() -> pa.Table:
        paths = [*_legacy_files(folder), *(folder / n for n in _live(folder, _listing(folder)))]  # oldest first
        parts: list[pa.Table] = []
        found = 0
        for source in reversed(paths):
            with _reading(source):
                file = pq.ParquetFile(source)
                present = set(file.schema_arrow.names)
                for group in reversed(range(file.num_row_groups)):
                    table = _conformed(file.read_row_group(group, columns=_wanted(columns, present)), present, columns)
                    parts.append(table.filter(keep(table)) if keep is not None else table)
                    found += parts[-1].num_rows
                    if found >= rows:
                        break
            if found >= rows:
                break
        if not parts:
            return pa.schema([SCHEMA.field(n) for n in columns]).empty_table()
        tail = pa.concat_tables(reversed(parts))
        return tail.slice(max(0, tail.num_rows - rows))

    return relisted(read)


@dataclass(frozen=True)
class Scorings:
    """Some leads' scorings in the score history, located for reading their inputs later
    (:func:`inputs_at`): ``rows`` (``lead_id``, ``model_version``, ``scored_at``, in append
    order, and where each is: ``file``, an index into ``files``, its row ``group`` and the
    ``row`` within it; ``inputs``: False when that row group holds no inputs, True when it
    may), and ``files``, the history's files as listed."""

    rows: pd.DataFrame
    files: tuple[Path, ...]


def locate_scorings(path: str | os.PathLike[str], lead_ids: Iterable[str]) -> Scorings:
    """Every scoring of ``lead_ids`` in the score history at ``path``, located (see
    :class:`Scorings`), reading only the lead, version and time columns; whether a row group
    holds inputs comes from the file's statistics. With :func:`inputs_at`, a reader of some
    leads' inputs decodes only the row groups of the scorings it picks."""
    folder = history_folder(path)
    wanted = pa.array(sorted(set(lead_ids)), type=pa.string())

    def located() -> tuple[list[Path], list[pd.DataFrame]]:
        _, listed = _listed(folder)
        return listed, [_located(p, i, wanted) for i, p in enumerate(listed)]

    paths, frames = relisted(located)
    rows = pd.concat(frames, ignore_index=True) if frames else _located_frame(_SCORING_COLUMNS.empty_table(), 0, 0, [], False)
    return Scorings(rows, tuple(paths))


_SCORING_COLUMNS = pa.schema([SCHEMA.field(n) for n in ("lead_id", "model_version", "scored_at")])


def _located_frame(table: pa.Table, file: int, group: int, rows: Sequence[int], inputs: bool) -> pd.DataFrame:
    return table.to_pandas().assign(
        file=file, group=group, row=np.asarray(rows, dtype="int64"), inputs=np.full(table.num_rows, inputs, dtype=bool)
    )


def _located(source: Path, index: int, wanted: pa.Array) -> pd.DataFrame:
    """The scorings of the ``wanted`` leads in one history file, located."""
    with _reading(source):
        file = pq.ParquetFile(source)
        present = set(file.schema_arrow.names)
        where = file.schema_arrow.get_field_index(INPUTS_COLUMN)
        frames = []
        for group in range(file.num_row_groups):
            table = file.read_row_group(group, columns=_SCORING_COLUMNS.names)
            hit = pc.is_in(table["lead_id"], value_set=wanted)
            if not pc.any(hit).as_py():
                continue
            meta = file.metadata.row_group(group)
            stats = meta.column(where).statistics if where >= 0 else None
            holds = where >= 0 and not (stats is not None and stats.has_null_count and stats.null_count == meta.num_rows)
            rows = np.flatnonzero(hit.to_numpy(zero_copy_only=False))
            frames.append(_located_frame(_conformed(table.filter(hit), present, _SCORING_COLUMNS.names), index, group, rows, holds))
    return pd.concat(frames, ignore_index=True) if frames else _located_frame(_SCORING_COLUMNS.empty_table(), index, 0, [], False)


def inputs_at(scorings: Scorings, picked: pd.DataFrame) -> list[str | None]:
    """The inputs of the ``picked`` scorings (rows of ``scorings.rows``), in their order; None
    for a scoring recorded without. Reads the inputs of their row groups only, one at a time."""
    out: list[str | None] = [None] * len(picked)
    position = np.arange(len(picked))
    for (file, group), part in picked.assign(_at=position).groupby(["file", "group"], sort=True):
        source = scorings.files[int(file)]
        with _reading(source):
            reader = pq.ParquetFile(source)
            if INPUTS_COLUMN not in reader.schema_arrow.names:
                continue
            column = reader.read_row_group(int(group), columns=[INPUTS_COLUMN])[INPUTS_COLUMN]
            texts = column.take(pa.array(part["row"].to_numpy(dtype="int64"))).to_pylist()
        for at, text in zip(part["_at"].tolist(), texts, strict=True):
            out[at] = text
    return out


class ScoreHistory:
    """The score history at ``path`` (see :func:`history_folder`; ``path`` here is the
    folder): read the latest scores, append new ones.

    A long-running reader (the service) lists the folder on each read, at most every
    ``refresh_seconds`` (default: on every read, which costs one directory listing), and reads
    only when the set of files changed: new parts are merged into the latest scores it holds
    (their cost, not the history's); a compaction, which changes no score, is not re-read."""

    def __init__(self, path: str | os.PathLike[str], refresh_seconds: float = 0.0) -> None:
        self.path = history_folder(path)
        self.refresh_seconds = refresh_seconds
        self._snapshot = _Snapshot(None)
        self._checked = -float("inf")
        self._reload = threading.Lock()

    def _current(self) -> _Snapshot:
        """The snapshot of the history as it is now, read again only if its files changed."""
        now = time.monotonic()
        if self.refresh_seconds > 0 and now - self._checked < self.refresh_seconds:
            return self._snapshot
        names, paths = relisted(lambda: _listed(self.path))  # a compacted file just listed may be gone
        key = tuple(str(p) for p in paths)
        if key != self._snapshot.key:
            with self._reload:
                if key != self._snapshot.key:
                    self._snapshot = self._load(names)
        self._checked = now
        return self._snapshot

    def _load(self, names: list[str]) -> _Snapshot:
        for attempt in range(5):
            try:
                return self._loaded(names)
            except FileNotFoundError:  # a compaction removed a file just listed: list again
                if attempt == 4:
                    raise
                try:
                    names, _ = _listed(self.path)
                except FileNotFoundError:
                    continue
        raise AssertionError("unreachable")

    def _loaded(self, names: list[str]) -> _Snapshot:
        """The snapshot for the files ``names``: the previous one with the new parts merged in
        when files were only added, the previous one relabelled when a compaction replaced files
        already read, else read in full."""
        old = self._snapshot
        live = _live(self.path, names)
        legacy = _legacy_files(self.path)
        paths = [*(self.path / n for n in live), *legacy]
        key = tuple(str(p) for p in paths)
        columns = ["lead_id", "score", "scored_at"]
        added = [n for n in live if n not in old.live]
        gone = set(old.live) - set(live)
        if old.key is not None and not legacy and len(old.key) == len(old.live):  # neither then nor now a single file to read
            if not gone and all(n.startswith(PART_PREFIX) for n in added):
                rows = _read_files([self.path / n for n in added], columns)
                latest, at = _latest_of(rows, old.latest, old.at)
                log.debug("score history %s: %d new file(s) merged, %d leads", self.path, len(added), len(latest))
                return _Snapshot(key, frozenset(names), tuple(live), latest, at)
            if all(n.startswith(COMPACTED_PREFIX) and _compacted_meta(self.path / n)[0] <= old.names for n in added):
                covered = set().union(*(_compacted_meta(self.path / n)[0] for n in added)) if added else set()
                if gone <= covered:
                    return _Snapshot(key, frozenset(names), tuple(live), old.latest, old.at, old.by_id)
        latest, at = _latest_of(_read_files(paths, columns))
        log.debug("score history %s: %d file(s) read, %d leads", self.path, len(paths), len(latest))
        return _Snapshot(key, frozenset(names), tuple(live), latest, at)

    def latest(self) -> pd.Series:
        """Lead id (text) -> latest score (the latest ``scored_at``; on a tie, the last
        appended). Empty when there is no history yet. Cached: do not modify."""
        return self._current().latest

    def lookup(self, ids: np.ndarray | Sequence[str]) -> np.ndarray:
        """Each id's latest score as float64, NaN for an id never scored."""
        snap = self._current()
        keys = ids if isinstance(ids, np.ndarray) else np.asarray(list(ids), dtype=object)
        if len(keys) <= _SMALL_LOOKUP:
            by_id = snap.by_id
            if by_id is None:  # once per reload
                by_id = dict(zip(snap.latest.index.tolist(), snap.latest.to_numpy(dtype="float64").tolist(), strict=True))
                snap.by_id = by_id
            return np.array([by_id.get(str(k), np.nan) for k in keys], dtype="float64")
        return scores_of(snap.latest, keys)

    def append(
        self,
        ids: np.ndarray | Sequence[str],
        scores: np.ndarray | Sequence[int],
        model_version: str,
        scored_at: str | datetime,
        job_id: str | None = None,
        inputs: Inputs | None = None,
        extra: pd.DataFrame | None = None,
    ) -> int:
        """Append one scoring job's scores: see :func:`append_scores`."""
        return append_scores(self.path, ids, scores, model_version, scored_at, job_id, inputs, extra)


def _latest_of(table: pa.Table, before: pd.Series | None = None, before_at: pd.Series | None = None) -> tuple[pd.Series, pd.Series]:
    """Latest score per lead and its time (µs since the epoch): stable sort by time (rows in
    append order, after the latest scores ``before`` at ``before_at`` if given), keep the last."""
    frame = pd.DataFrame(
        {
            "lead_id": table["lead_id"].to_pandas(),
            "score": table["score"].to_numpy(),
            "at": pc.cast(table["scored_at"], pa.int64()).to_numpy(),
        }
    )
    if before is not None and before_at is not None and len(before):
        earlier = pd.DataFrame({"lead_id": before.index, "score": before.to_numpy(), "at": before_at.to_numpy()})
        frame = pd.concat([earlier, frame], ignore_index=True) if len(frame) else earlier
    if frame.empty:
        return _empty_latest(), _empty_at()
    frame = frame.sort_values("at", kind="stable").drop_duplicates("lead_id", keep="last")
    index = pd.Index(frame["lead_id"].astype("str"), name="lead_id")
    return (
        pd.Series(frame["score"].to_numpy(dtype="int16"), index=index, name="score"),
        pd.Series(frame["at"].to_numpy(dtype="int64"), index=index, name="scored_at"),
    )


#: The leads' inputs as scored, one JSON text per lead (null: not recorded); see
#: :mod:`leadscoring.serving.inputs`.
Inputs = pa.Array | pa.ChunkedArray | Sequence[str | None]


def append_scores(
    path: str | os.PathLike[str],
    ids: np.ndarray | Sequence[str],
    scores: np.ndarray | Sequence[int],
    model_version: str,
    scored_at: str | datetime,
    job_id: str | None = None,
    inputs: Inputs | None = None,
    extra: pd.DataFrame | None = None,
) -> int:
    """Append one scoring job's scores (all with the same model version and time) to the
    score history at ``path``; returns the number of rows appended. ``job_id`` identifies the
    job (default: a new one, see :func:`new_job_id`): rows already in the history with the
    same lead, time, model version and job (the same job's append retried) are not appended
    again; another job's rows are, even for the same leads in the same second. ``inputs``:
    each lead's input as scored (:func:`leadscoring.serving.inputs.inputs_json`; default
    none recorded). ``extra``: the other declared score fields (:data:`SCORE_EXTRA_COLUMNS`,
    e.g. ``experiment_group``), one row per lead in order; a field it lacks is null."""
    if not isinstance(model_version, str) or not model_version.strip():
        raise LeadDataError(f"score history: model_version must be non-empty text, got {model_version!r}")
    job = new_job_id() if job_id is None else _job_text(job_id)
    n = len(ids)
    when = pa.repeat(_timestamps(pd.Series([scored_at], dtype=object), "score history: scored_at")[0], n)
    versions = np.full(n, model_version, dtype=object)
    return _append_rows(path, _rows(ids, scores, versions, when, job, _extra(extra, n), inputs), job)


def append_scorings(
    path: str | os.PathLike[str],
    ids: np.ndarray | Sequence[str],
    scores: np.ndarray | Sequence[int],
    model_versions: np.ndarray | Sequence[str],
    scored_at: np.ndarray | Sequence[str | datetime],
    job_id: str | None = None,
    inputs: Inputs | None = None,
    extra: pd.DataFrame | None = None,
) -> int:
    """Append scorings that each carry their own model version and time (the service's
    requests, gathered) as one job: see :func:`append_scores`."""
    versions = pd.Series(np.asarray(model_versions, dtype=object))
    blank = versions.isna() | (versions.astype(str).str.strip() == "")
    if blank.any():
        raise LeadDataError(f"score history: model_version is empty in {int(blank.sum())} row(s)")
    job = new_job_id() if job_id is None else _job_text(job_id)
    times = _timestamps(pd.Series(np.asarray(scored_at, dtype=object)), "score history: scored_at")
    return _append_rows(path, _rows(ids, scores, versions.to_numpy(), times, job, _extra(extra, len(ids)), inputs), job)


def _extra(extra: pd.DataFrame | None, n: int) -> pd.DataFrame | None:
    """The extra score fields given to an append, checked: one row per lead, positions as given."""
    if extra is None:
        return None
    if len(extra) != n:
        raise LeadDataError(f"score history: {n} lead ids but {len(extra)} rows of {list(extra.columns)}")
    return extra.reset_index(drop=True)


def _append_rows(path: str | os.PathLike[str], rows: pa.Table, job: str) -> int:
    """Write the rows of job ``job`` not yet in the history as a new part (reading only the
    job's own earlier parts, if any)."""
    if rows.num_rows == 0:
        return 0
    folder = history_folder(path)
    if _legacy_files(folder):
        migrate(folder)
    key = _job_key(job)

    def job_rows() -> list[pa.Table]:
        earlier = []
        for n in _live(folder, _listing(folder)):
            if _part_job(n) == key:
                earlier.append(_read_file(folder / n, ROW_KEY))
            elif n.startswith(COMPACTED_PREFIX) and key in _compacted_meta(folder / n)[1]:  # a retry after a compaction
                found = pq.read_table(folder / n, columns=list(ROW_KEY), filters=[("job_id", "==", job)])
                earlier.append(found.cast(pa.schema([SCHEMA.field(c) for c in ROW_KEY])))
        return earlier

    earlier = relisted(job_rows)  # never append without knowing what this job already wrote
    old = pa.concat_tables(earlier) if earlier else pa.schema([SCHEMA.field(c) for c in ROW_KEY]).empty_table()
    new = _not_in(rows, old)
    if new.num_rows:
        part = folder / f"{PART_PREFIX}{time.time_ns():020d}-{key}-{uuid.uuid4().hex[:8]}.parquet"
        with atomic_path(part) as tmp:  # a full disk: one line, the history left as it was
            _write(new, tmp)
    log.info("score history %s: %d rows appended (%d already there)", folder, new.num_rows, rows.num_rows - new.num_rows)
    return new.num_rows


def _write(table: pa.Table, dest: Path) -> None:
    """Write history rows (a part) to ``dest`` (:data:`_WRITE_OPTIONS`)."""
    pq.write_table(table, dest, row_group_size=ROW_GROUP_ROWS, **_WRITE_OPTIONS)


@dataclass(frozen=True)
class Compaction:
    """What :func:`compact` did: ``files`` files replaced by ``written`` (None: nothing to do)
    holding ``rows`` rows."""

    files: int
    rows: int
    written: Path | None


def _compaction_lock(folder: Path) -> contextlib.AbstractContextManager[None]:
    """One compaction at a time per folder (:func:`leadscoring.io.exclusive_lock`); one left
    by a compaction that died is taken over after :data:`STALE_COMPACTION_SECONDS`."""
    return exclusive_lock(folder / COMPACTION_LOCK, "compaction of the score history", stale_seconds=STALE_COMPACTION_SECONDS)


def _jobs_in(path: Path) -> frozenset[str]:
    """The digests of the jobs in a file without that metadata (a migrated single-file history)."""
    if _REPLACES_KEY in (pq.read_schema(path).metadata or {}):
        return frozenset()  # a compacted file of ours: its metadata says it all
    jobs = pc.unique(_read_file(path, ["job_id"])["job_id"]).drop_null().to_pylist()
    return frozenset(_job_key(j) for j in jobs)


def compact(path: str | os.PathLike[str]) -> Compaction:
    """Replace every file of the score history at ``path`` by one compacted file (rows in
    append order), then remove them. Safe while others append: a part written meanwhile was
    not listed, so it is neither in the compacted file nor removed; readers ignore the
    replaced files from the moment the compacted file appears. One compaction at a time
    (a second one raises :class:`LeadDataError`)."""
    folder = history_folder(path)
    migrate(folder)
    if not folder.is_dir():
        return Compaction(0, 0, None)
    with _compaction_lock(folder):
        names = _listing(folder)
        live = _live(folder, names)
        if len(live) <= 1 and len(names) == len(live) and not any(LEGACY_TAG in n for n in live):
            log.info("score history %s: %d file(s), nothing to compact", folder, len(names))
            return Compaction(0, 0, None)
        jobs = {j for n in live if (j := _part_job(n)) is not None}
        for n in live:
            if n.startswith(COMPACTED_PREFIX):
                jobs |= _compacted_meta(folder / n)[1] or _jobs_in(folder / n)
        meta = {_REPLACES_KEY: json.dumps(sorted(names)).encode(), _JOBS_KEY: json.dumps(sorted(jobs)).encode()}
        dest = folder / f"{COMPACTED_PREFIX}{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        rows = 0
        with atomic_path(dest) as tmp, pq.ParquetWriter(tmp, SCHEMA.with_metadata(meta), **_WRITE_OPTIONS) as writer:
            for n in live:  # a batch at a time: memory bounded by a batch, not the history
                for table in _file_batches(folder / n):
                    writer.write_table(table.replace_schema_metadata(meta), row_group_size=ROW_GROUP_ROWS)
                    rows += table.num_rows
        for n in names:  # a file left here (stopped, or open elsewhere on Windows) is replaced: ignored, removed next time
            try:
                (folder / n).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning(
                    "score history: %s not removed yet (%s); replaced by %s, removed by the next compaction", n, exc, dest.name
                )
    log.info("score history %s: %d file(s) compacted into %s (%d rows)", folder, len(names), dest.name, rows)
    return Compaction(len(names), rows, dest)


def _not_in(rows: pa.Table, old: pa.Table) -> pa.Table:
    """``rows`` without duplicates and without the rows whose (lead, time, version, job) are in
    ``old`` (an old row without a job id matches no new row: it is a job of its own)."""
    keys = list(ROW_KEY)
    frame = rows.select(keys).to_pandas()
    keep = ~frame.duplicated(keys, keep="last").to_numpy()
    if old.num_rows:
        same_time = old.filter(pc.is_in(old["scored_at"], value_set=pc.unique(rows["scored_at"])))
        if same_time.num_rows:
            seen = pd.MultiIndex.from_frame(same_time.select(keys).to_pandas())
            keep &= ~pd.MultiIndex.from_frame(frame[keys]).isin(seen)
    return rows.filter(pa.array(keep))


def _job_text(job_id: object) -> str:
    """A job id as given, checked: non-empty text."""
    if not isinstance(job_id, str) or not job_id.strip():
        raise LeadDataError(f"score history: job_id must be non-empty text, got {job_id!r}")
    return job_id


#: The history's own columns; any other column of :data:`SCHEMA` is a score field declared
#: ``history=`` in :mod:`leadscoring.scored_lead`, taken from the scores when they have it.
OWN_COLUMNS = ("lead_id", "score", "model_version", "scored_at", "job_id", INPUTS_COLUMN)

#: The score fields kept beside the history's own columns (e.g. ``experiment_group``): what an
#: appender passes as ``extra`` when its scorings carry them.
SCORE_EXTRA_COLUMNS: tuple[str, ...] = tuple(n for n in SCHEMA.names if n not in OWN_COLUMNS)


def _rows(
    ids: np.ndarray | Sequence[str],
    scores: np.ndarray | Sequence[int],
    versions: np.ndarray,
    times: pa.Array,
    job_id: str,
    extra: pd.DataFrame | None = None,
    inputs: Inputs | None = None,
) -> pa.Table:
    """The rows to append (all of job ``job_id``), checked: ids non-empty text, scores whole
    numbers 0..100; the other declared history fields from ``extra`` (null where absent), the
    inputs from ``inputs`` (null where absent)."""
    try:
        lead_ids = pa.array(ids, type=pa.string())
    except (pa.ArrowException, TypeError) as exc:
        raise LeadDataError(f"score history: lead ids must be text ({str(exc).splitlines()[0]})") from exc
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(lead_ids), ""), True)
    if pc.any(blank).as_py():
        where = np.flatnonzero(blank.to_numpy(zero_copy_only=False))
        raise LeadDataError(f"score history: {len(where)} lead id(s) empty, at position(s) {where[:5].tolist()}")
    values = pd.to_numeric(pd.Series(scores, dtype=object), errors="coerce").to_numpy(dtype="float64")
    if len(values) != len(lead_ids):
        raise LeadDataError(f"score history: {len(lead_ids)} lead ids but {len(values)} scores")
    bad = ~(np.isfinite(values) & (values == np.round(values)) & (values >= 0) & (values <= 100))
    if bad.any():
        shown = pd.Series(scores, dtype=object)[bad][:5].tolist()
        raise LeadDataError(f"score history: scores must be whole numbers from 0 to 100; found {shown} ({int(bad.sum())} bad)")
    jobs = pa.repeat(pa.scalar(job_id, pa.string()), len(lead_ids))
    own = dict(
        zip(
            ("lead_id", "score", "model_version", "scored_at", "job_id"),
            [lead_ids, pa.array(values.astype("int16")), pa.array(versions, type=pa.string()), times, jobs],
            strict=True,
        )
    )
    if inputs is not None:
        own[INPUTS_COLUMN] = _inputs_array(inputs, len(lead_ids))
    arrays = []
    for column in SCHEMA:
        if column.name in own:
            arrays.append(own[column.name])
        elif extra is not None and column.name in extra.columns:
            values = extra[column.name]
            if pa.types.is_integer(column.type):
                values = pd.to_numeric(values, errors="coerce")
            else:  # an empty CSV cell is no value
                values = values.astype(object).where(values.notna() & (values.astype(str) != ""), None)
            arrays.append(pa.array(values, from_pandas=True).cast(column.type))
        else:
            arrays.append(pa.nulls(len(lead_ids), column.type))
    return pa.table(arrays, schema=SCHEMA)


def _inputs_array(inputs: Inputs, n: int) -> pa.Array | pa.ChunkedArray:
    """The inputs as an Arrow text column of ``n`` values, checked."""
    if isinstance(inputs, pa.ChunkedArray | pa.Array):
        array = inputs.cast(pa.string())
    else:
        try:
            array = pa.array(list(inputs), type=pa.string())
        except (pa.ArrowException, TypeError) as exc:
            raise LeadDataError(f"score history: inputs must be JSON text ({str(exc).splitlines()[0]})") from exc
    if len(array) != n:
        raise LeadDataError(f"score history: {n} lead ids but {len(array)} inputs")
    return array


def _timestamps(values: pd.Series, origin: str) -> pa.Array:
    """Times (ISO 8601 text or datetimes; naive ones taken as UTC) as UTC microseconds."""
    try:
        parsed = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
    except (ValueError, TypeError) as exc:
        raise LeadDataError(f"{origin}: not dates and times ({str(exc).splitlines()[0]})") from exc
    bad = parsed.isna().to_numpy()
    if bad.any():
        raise LeadDataError(
            f"{origin}: {int(bad.sum())} value(s) are not ISO 8601 dates and times, e.g. {values[bad].tolist()[:3]}"
        )
    return pa.array(parsed.dt.floor("us")).cast(pa.timestamp("us", tz="UTC"))


def append_scores_file(
    history_path: str | os.PathLike[str],
    scores_path: str | os.PathLike[str],
    id_column: str,
    job_id: str | None = None,
    inputs_file: str | os.PathLike[str] | None = None,
) -> int:
    """Append a scores file written by ``leadscoring score`` or notebook 10 (CSV or parquet
    with ``id_column``, ``score``, ``model_version`` and ``scored_at``) to the score history
    at ``history_path``; ids are kept as text exactly as written. Returns the rows appended.

    ``job_id`` is the identity of the job that wrote the file (``leadscoring score`` passes
    its own, so two jobs are never one); by default it is derived from the file's content, so
    appending the same file twice adds it once. ``inputs_file``: the inputs file the scoring
    wrote (:func:`leadscoring.serving.batch.score_stream`), joined to the scores by lead,
    model version and time; a score it lacks is appended without inputs (counted in the log)."""
    path = Path(scores_path)
    core = [id_column, "score", *STAMP_COLUMNS]
    header = scores_file_columns(path) if path.is_file() else []  # (a missing file: the reader's one line below)
    declared = [n for n in SCORE_EXTRA_COLUMNS if n in header]
    read = read_scores_file(path, id_column, columns=[*core, *declared], needed_for="the score history")
    frame, extra = read[core], (read[declared] if declared else None)
    frame = frame.assign(**{id_column: frame[id_column].astype("str").where(frame[id_column].notna(), "")})
    versions = frame["model_version"].astype(object)
    blank = versions.isna() | (versions.astype(str).str.strip() == "")
    if blank.any():
        raise LeadDataError(f"{path}: column 'model_version' is empty in {int(blank.sum())} row(s)")
    times = _timestamps(frame["scored_at"], f"{path}: column 'scored_at'")
    job = _job_text(job_id) if job_id is not None else _file_job_id(frame)
    inputs = None if inputs_file is None else _joined_inputs(frame, id_column, Path(inputs_file))
    rows = _rows(frame[id_column].to_numpy(dtype=object), frame["score"].to_numpy(), versions.to_numpy(), times, job, extra, inputs)
    return _append_rows(history_path, rows, job)


def _row_keys(ids: pd.Series, versions: pd.Series, times: pd.Series) -> pd.Index:
    """One text key per scoring: lead, model version and time as written."""
    return pd.Index(ids.astype(str) + "\x1f" + versions.astype(str) + "\x1f" + times.astype(str))


def _joined_inputs(frame: pd.DataFrame, id_column: str, inputs_file: Path) -> pa.Array:
    """The inputs of the scores in ``frame`` (id, model version, time as written), from an
    inputs file; null for a score the file does not hold."""
    try:
        table = pq.read_table(inputs_file, columns=INPUTS_FILE_SCHEMA.names).cast(INPUTS_FILE_SCHEMA)
    except FileNotFoundError:
        raise LeadDataError(f"{inputs_file}: inputs file not found") from None
    except (pa.ArrowException, KeyError, ValueError, OSError) as exc:
        raise LeadDataError(f"{inputs_file}: not a readable inputs file ({str(exc).splitlines()[0]})") from None
    keys = _row_keys(*(table[c].to_pandas() for c in ("lead_id", "model_version", "scored_at")))
    last = ~keys.duplicated(keep="last")
    pos = keys[last].get_indexer(_row_keys(frame[id_column], frame["model_version"], frame["scored_at"]))
    missing = pos < 0
    if missing.any():
        log.warning("score history: %d of %d score(s) of this job have no inputs in %s", int(missing.sum()), len(pos), inputs_file)
    if missing.all():
        return pa.nulls(len(pos), pa.string())
    rows = np.flatnonzero(last)[np.where(missing, 0, pos)]  # the file's row of each score
    return table[INPUTS_COLUMN].take(pa.array(rows, mask=missing))


def _file_job_id(frame: pd.DataFrame) -> str:
    """The identity of the job that wrote a scores file, from the rows read from it (id, score,
    model version, time): appending the same file again is a retry (nothing added); a file
    with other rows is another job."""
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return "file-" + hashlib.blake2b(hashes.tobytes(), digest_size=16).hexdigest()


def has_stamps(scores_path: str | os.PathLike[str]) -> bool:
    """Whether a scores file has the model version and time columns the score history needs."""
    names = scores_file_columns(scores_path)
    return all(c in names for c in STAMP_COLUMNS)


def append_run_scores(history_path: str | os.PathLike[str], results_dir: str | os.PathLike[str], id_column: str) -> int | None:
    """After a promoted run: append ``scores.parquet`` (else ``scores.csv``) of ``results_dir``
    to the score history, with the leads' inputs from the inputs file notebook 10 wrote beside
    it (``scores.inputs.parquet``; none: appended without inputs). None (logged) without a
    scores file or its model version and time columns, or if the history cannot be written
    (an error, but the run stays promoted)."""
    found = [p for p in (Path(results_dir) / "scores.parquet", Path(results_dir) / "scores.csv") if p.is_file()]
    if not found:
        log.info("score history: no scores file in %s; nothing appended", results_dir)
        return None
    try:
        if not has_stamps(found[0]):
            log.info("score history: %s has no %s columns; nothing appended", found[0], " / ".join(STAMP_COLUMNS))
            return None
        inputs = inputs_file_for(found[0])
        return append_scores_file(history_path, found[0], id_column, inputs_file=inputs if inputs.is_file() else None)
    except (LeadDataError, OSError, pa.ArrowException) as exc:
        log.error("score history %s not updated: %s", history_path, exc)
        return None
