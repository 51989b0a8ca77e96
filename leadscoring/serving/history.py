"""The score history: every production scoring's scores (``lead_id`` text, ``score`` int16, ``model_version``
text, ``scored_at`` UTC timestamp in µs, ``job_id`` text) appended to one parquet file, so each lead's previous
score and trend (improving / steady / declining / new) can be shown. Writers take an exclusive ``flock`` on the
sidecar ``<name>.lock`` and replace the whole file atomically, so readers (a long-running service) always see a
complete file; :class:`ScoreHistory` re-reads it only when it changed.

Each appended scoring carries its job's identity (``job_id``): a row already in the history with the same lead,
model version, time and job (a retried append) is not appended again, while two jobs scoring the same leads in
the same second are both kept. Files written before ``job_id`` existed still read: their rows have none (null),
so each counts as a job of its own."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from leadscoring.errors import LeadDataError
from leadscoring.io import atomic_path
from leadscoring.scored_lead import history_fields

log = logging.getLogger(__name__)

TRENDS = ("improving", "steady", "declining", "new")

#: The score columns a scoring keeps (declared in :mod:`leadscoring.scored_lead`), then the job.
SCHEMA = pa.schema([*history_fields(), ("job_id", pa.string())])

STAMP_COLUMNS = ("model_version", "scored_at")

#: Columns a history file may lack (written before they existed): read as nulls.
OPTIONAL_COLUMNS = frozenset({"job_id"})

#: What identifies one row: a row with the same values is the same scoring appended again.
ROW_KEY = ("lead_id", "scored_at", "model_version", "job_id")


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
    """The latest score per lead in one version of the file (``by_id``: as a dict, for small lookups)."""

    stamp: tuple[int, int, int] | None
    latest: pd.Series
    by_id: dict[str, float] | None = None


def _empty_latest() -> pd.Series:
    return pd.Series(np.empty(0, dtype="int16"), index=pd.Index([], dtype="str", name="lead_id"), name="score")


class ScoreHistory:
    """The score history file at ``path``: read the latest scores, append new ones."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._snapshot = _Snapshot(None, _empty_latest())
        self._reload = threading.Lock()

    def _current(self) -> _Snapshot:
        """The snapshot of the file as it is now, re-read only if the file changed."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._snapshot = self._snapshot if self._snapshot.stamp is None else _Snapshot(None, _empty_latest())
            return self._snapshot
        if (st.st_ino, st.st_mtime_ns, st.st_size) == self._snapshot.stamp:
            return self._snapshot
        with self._reload:
            try:
                with open(self.path, "rb") as fh:  # stamp and content of the same file, even if replaced meanwhile
                    st = os.fstat(fh.fileno())
                    stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
                    if stamp != self._snapshot.stamp:
                        table = self._read(fh, ["lead_id", "score", "scored_at"])
                        self._snapshot = _Snapshot(stamp, _latest_of(table))
                        log.debug("score history %s: %d leads", self.path, len(self._snapshot.latest))
            except FileNotFoundError:
                self._snapshot = _Snapshot(None, _empty_latest())
        return self._snapshot

    def _read(self, source: object, columns: Sequence[str] = tuple(SCHEMA.names)) -> pa.Table:
        """The ``columns`` of the history file (path or open file), in the history's types; an
        optional column the file lacks (:data:`OPTIONAL_COLUMNS`) is read as nulls."""
        try:
            file = pq.ParquetFile(source)
            present = set(file.schema_arrow.names)
            table = file.read(columns=[n for n in columns if n in present or n not in OPTIONAL_COLUMNS])
            for name in columns:
                if name not in present and name in OPTIONAL_COLUMNS:
                    table = table.append_column(SCHEMA.field(name), pa.nulls(table.num_rows, SCHEMA.field(name).type))
            return table.select(list(columns)).cast(pa.schema([SCHEMA.field(n) for n in columns]))
        except (pa.ArrowException, KeyError, ValueError) as exc:
            raise LeadDataError(f"{self.path}: not a readable score history ({str(exc).splitlines()[0]})") from exc

    def latest(self) -> pd.Series:
        """Lead id (text) -> latest score (the latest ``scored_at``; on a tie, the last
        appended). Empty when the file does not exist. Cached: do not modify."""
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

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive lock on the sidecar lock file: one writer at a time, across processes."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def append(
        self,
        ids: np.ndarray | Sequence[str],
        scores: np.ndarray | Sequence[int],
        model_version: str,
        scored_at: str | datetime,
        job_id: str | None = None,
    ) -> int:
        """Append one scoring job's scores (all with the same model version and time); returns
        the number of rows appended. ``job_id`` identifies the job (default: a new one, see
        :func:`new_job_id`): rows already in the history with the same lead, time, model
        version and job (the same job's append retried) are not appended again; another job's
        rows are, even for the same leads in the same second."""
        if not isinstance(model_version, str) or not model_version.strip():
            raise LeadDataError(f"score history: model_version must be non-empty text, got {model_version!r}")
        job = new_job_id() if job_id is None else _job_text(job_id)
        n = len(ids)
        when = pa.repeat(_timestamps(pd.Series([scored_at], dtype=object), "score history: scored_at")[0], n)
        return self._append(_rows(ids, scores, np.full(n, model_version, dtype=object), when, job))

    def _append(self, rows: pa.Table) -> int:
        if rows.num_rows == 0:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            try:
                with open(self.path, "rb") as fh:  # one open: a path may be opened twice by pyarrow
                    old = self._read(fh)
            except FileNotFoundError:
                old = SCHEMA.empty_table()
            new = _not_in(rows, old)
            if new.num_rows:
                with atomic_path(self.path) as tmp:  # a full disk: one line, the history left as it was
                    pq.write_table(pa.concat_tables([old, new]), tmp)
        log.info("score history %s: %d rows appended (%d already there)", self.path, new.num_rows, rows.num_rows - new.num_rows)
        return new.num_rows


def _latest_of(table: pa.Table) -> pd.Series:
    """Latest score per lead: stable sort by time (file order = append order), keep the last."""
    if table.num_rows == 0:
        return _empty_latest()
    frame = table.to_pandas().sort_values("scored_at", kind="stable").drop_duplicates("lead_id", keep="last")
    return pd.Series(
        frame["score"].to_numpy(dtype="int16"), index=pd.Index(frame["lead_id"].astype("str"), name="lead_id"), name="score"
    )


def _not_in(rows: pa.Table, old: pa.Table) -> pa.Table:
    """``rows`` without duplicates and without the rows whose (lead, time, version, job) are in
    ``old`` (an old row without a job id matches no new row: it is a job of its own)."""
    keys = list(ROW_KEY)
    frame = rows.to_pandas()
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


def _rows(
    ids: np.ndarray | Sequence[str], scores: np.ndarray | Sequence[int], versions: np.ndarray, times: pa.Array, job_id: str
) -> pa.Table:
    """The rows to append (all of job ``job_id``), checked: ids non-empty text, scores whole numbers 0..100."""
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
    return pa.table([lead_ids, pa.array(values.astype("int16")), pa.array(versions, type=pa.string()), times, jobs], schema=SCHEMA)


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


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in {".parquet", ".pq"}


def _columns_of(path: Path) -> list[str]:
    """The column names of a scores file (parquet schema, or the CSV header line)."""
    if _is_parquet(path):
        return list(pq.read_schema(path).names)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return next(csv.reader(fh), [])


def _read_scores(path: Path, id_column: str) -> pd.DataFrame:
    """The id, score, model version and time columns of a scores file (CSV: all as text)."""
    wanted = [id_column, "score", *STAMP_COLUMNS]
    names = _columns_of(path)
    missing = [c for c in wanted if c not in names]
    if missing:
        raise LeadDataError(f"{path}: missing column(s) {missing} needed for the score history; found {names}")
    if _is_parquet(path):
        table = pq.read_table(path, columns=wanted)
    else:
        options = pacsv.ConvertOptions(
            include_columns=wanted, column_types=dict.fromkeys(wanted, pa.string()), strings_can_be_null=False
        )
        table = pacsv.read_csv(path, convert_options=options)
    frame = table.to_pandas()
    return frame.assign(**{id_column: frame[id_column].astype("str").where(frame[id_column].notna(), "")})


def _file_job_id(frame: pd.DataFrame) -> str:
    """The identity of the job that wrote a scores file, from the rows read from it (id, score,
    model version, time): appending the same file again is a retry (nothing added); a file
    with other rows is another job."""
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return "file-" + hashlib.blake2b(hashes.tobytes(), digest_size=16).hexdigest()


def append_scores_file(
    history_path: str | os.PathLike[str], scores_path: str | os.PathLike[str], id_column: str, job_id: str | None = None
) -> int:
    """Append a scores file written by ``leadscoring score`` or notebook 10 (CSV or parquet
    with ``id_column``, ``score``, ``model_version`` and ``scored_at``) to the history at
    ``history_path``; ids are kept as text exactly as written. Returns the rows appended.

    ``job_id`` is the identity of the job that wrote the file (``leadscoring score`` passes
    its own, so two jobs are never one); by default it is derived from the file's content, so
    appending the same file twice adds it once."""
    path = Path(scores_path)
    if not path.is_file():
        raise LeadDataError(f"{path}: file not found")
    frame = _read_scores(path, id_column)
    versions = frame["model_version"].astype(object)
    blank = versions.isna() | (versions.astype(str).str.strip() == "")
    if blank.any():
        raise LeadDataError(f"{path}: column 'model_version' is empty in {int(blank.sum())} row(s)")
    times = _timestamps(frame["scored_at"], f"{path}: column 'scored_at'")
    job = _job_text(job_id) if job_id is not None else _file_job_id(frame)
    return ScoreHistory(history_path)._append(
        _rows(frame[id_column].to_numpy(dtype=object), frame["score"].to_numpy(), versions.to_numpy(), times, job)
    )


def has_stamps(scores_path: str | os.PathLike[str]) -> bool:
    """Whether a scores file has the model version and time columns the history needs."""
    names = _columns_of(Path(scores_path))
    return all(c in names for c in STAMP_COLUMNS)


def append_run_scores(history_path: str | os.PathLike[str], results_dir: str | os.PathLike[str], id_column: str) -> int | None:
    """After a promoted run: append ``scores.parquet`` (else ``scores.csv``) of ``results_dir``
    to the history. None (logged) without a scores file or its model version and time
    columns, or if the history cannot be written (an error, but the run stays promoted)."""
    found = [p for p in (Path(results_dir) / "scores.parquet", Path(results_dir) / "scores.csv") if p.is_file()]
    if not found:
        log.info("score history: no scores file in %s; nothing appended", results_dir)
        return None
    try:
        if not has_stamps(found[0]):
            log.info("score history: %s has no %s columns; nothing appended", found[0], " / ".join(STAMP_COLUMNS))
            return None
        return append_scores_file(history_path, found[0], id_column)
    except (LeadDataError, OSError, pa.ArrowException) as exc:
        log.error("score history %s not updated: %s", history_path, exc)
        return None
