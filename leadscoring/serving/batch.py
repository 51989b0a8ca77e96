"""Batch scoring of a file, streamed in chunks (the local engine; ``score_file``).

The input (CSV or parquet) is read in chunks by the one reader
(:mod:`leadscoring.ingest.reader`); each chunk is validated (with the file's line numbers
in any error, and ids checked for duplicates across chunks), scored and appended to a
temporary output that is renamed over the destination only when every chunk succeeded.
Memory stays bounded by the chunk size. With ``scoring.bad_rows: set_aside`` a row that
fails validation is left out and written, with its line and problem, to the rejected-rows
file beside the output (:func:`rejected_path`); the file is refused all the same when more
than ``scoring.max_bad_share`` of its rows fail. The dask engine
(:mod:`leadscoring.serving.distributed`) runs this engine once per input file.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from leadscoring.config import ProjectConfig
from leadscoring.errors import LeadDataError, OutputPathError
from leadscoring.ingest.load import IdTracker
from leadscoring.ingest.reader import DEFAULT_CHUNK_ROWS, RowLocator, is_parquet, iter_raw_chunks, row_locator
from leadscoring.ingest.schema import BadRows, check_bad_share, validate_leads
from leadscoring.io import atomic_path, check_output
from leadscoring.serving.inputs import INPUTS_FILE_SCHEMA, inputs_table, raw_inputs
from leadscoring.serving.outputs import arrow_table, reasons_as_text
from leadscoring.serving.scorer import Scorer, utc_now

log = logging.getLogger(__name__)

#: Output names that promise a spreadsheet: refused (scores are CSV or parquet).
SPREADSHEET_SUFFIXES = (".xlsx", ".xls", ".xlsm", ".ods", ".numbers")
#: A file's first leads, compared with the training leads for fields it lacks (:meth:`Scorer.input_gaps`).
GAP_SAMPLE = 20_000


def _prefetch(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Read the next chunk in a background thread while the current one is scored
    (pyarrow parsing releases the GIL)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read") as pool:
        ahead = pool.submit(next, chunks, None)
        while True:
            chunk = ahead.result()
            if chunk is None:
                return
            ahead = pool.submit(next, chunks, None)
            yield chunk


def _write_csv(table: Any, sink: Any, header: bool) -> None:
    import pyarrow.csv as pacsv

    pacsv.write_csv(table, sink, write_options=pacsv.WriteOptions(include_header=header, quoting_style="needed"))


def rejected_path(output: str | os.PathLike[str]) -> Path:
    """Where ``score`` sets aside the rows it could not read: ``scores.rejected.csv`` for
    ``scores.csv``, ``scores.parquet.rejected.csv`` for ``scores.parquet`` (never another
    output's)."""
    out = Path(output)
    return out.with_name(f"{out.stem if out.suffix.lower() == '.csv' else out.name}.rejected.csv")


@dataclass
class _Scored:
    """One chunk scored: the scores (an Arrow table; None when every row was set aside), the
    leads' inputs as read (when the job keeps them), the record numbers of the rows scored and
    the rows set aside (:meth:`BadRows.table`; None when there are none)."""

    table: Any
    inputs: Any
    records: pd.Index
    rejected: pd.DataFrame | None = None


def _validate_chunk(
    scorer: Any, raw: pd.DataFrame, origin: str, rows: RowLocator, job: _Job
) -> tuple[pd.DataFrame, BadRows | None]:
    """One raw chunk validated: its leads, and (with ``job.set_aside``) the rows set aside."""
    bad = BadRows() if job.set_aside else None
    leads = validate_leads(
        raw, scorer.cfg, require_target=False, origin=origin, rows=rows, may_lack=scorer.unread_columns, bad_rows=bad
    )
    return leads, bad


def _chunk_table(scorer: Any, raw: pd.DataFrame, origin: str, rows: RowLocator, job: _Job) -> _Scored:
    """Validate and score one raw chunk (:func:`_score_chunk`)."""
    return _score_chunk(scorer, raw, *_validate_chunk(scorer, raw, origin, rows, job), job)


def _score_chunk(scorer: Any, raw: pd.DataFrame, leads: pd.DataFrame, bad: BadRows | None, job: _Job) -> _Scored:
    """Score one validated chunk; the scores as an Arrow table, and (when the job keeps them)
    the leads' inputs as read (:func:`~leadscoring.serving.inputs.raw_inputs`). The rows
    ``bad`` set aside are left out and returned as read."""
    rejected = None
    if bad:  # (an empty BadRows is falsy)
        rejected = bad.table()
        raw = raw.drop(index=bad.records)
    if not len(leads):
        return _Scored(None, None, raw.index, rejected)
    cols = scorer.score_columns(leads, reasons=job.reasons, scored_at=job.scored_at)
    inputs = raw_inputs(scorer.cfg, raw) if job.inputs else None
    return _Scored(arrow_table(cols, text_reasons=not job.parquet), inputs, raw.index, rejected)


@dataclass(frozen=True)
class _Job:
    """What every chunk of one scoring job shares."""

    reasons: bool  # reasons, fit and engagement scores
    parquet: bool  # structured reasons (else one readable line, for CSV)
    scored_at: str
    inputs: bool = False  # keep the leads' inputs (an inputs file)
    set_aside: bool = False  # rows that fail validation are set aside, not the job's failure


_WORKER: dict[str, Any] = {}


def _worker_init(config: dict[str, Any], models_dir: str) -> None:
    # The configuration travels as data: the same settings (score history included) as the parent.
    _WORKER["scorer"] = Scorer.load(ProjectConfig.model_validate(config), models_dir, check_experiment=False)  # checked by the job


def _worker_score(raw: pd.DataFrame, origin: str, rows: RowLocator, job: _Job) -> _Scored:
    return _chunk_table(_WORKER["scorer"], raw, origin, rows, job)


def protected_folders(cfg: ProjectConfig) -> list[Path]:
    """Folders no output may be written into: the raw exports'."""
    return [cfg.path("raw_data").parent]


class RejectedRows:
    """The rows a job set aside (:meth:`BadRows.table`, in file order), appended to a temporary
    file beside ``dest`` in the export's separator and encoding. :meth:`commit` renames it over
    ``dest`` once the job's other outputs are in place; :meth:`discard` removes it (a failed
    job). Opened at the first row set aside: a job with none writes nothing."""

    def __init__(self, dest: Path, cfg: ProjectConfig) -> None:
        self.dest, self.cfg = dest, cfg
        self._write: Any = None  # the atomic write of dest, once open
        self.sink: Any = None
        self.columns: list[str] = []  # the first rows' (line, problem, the file's columns): every row's
        self.count = 0
        self.first = ""  # the first row set aside in the file and its problem

    def add(self, frame: pd.DataFrame | None) -> None:
        if frame is None or not len(frame):
            return
        if self.sink is None:
            self._write = atomic_path(self.dest)
            tmp = self._write.__enter__()
            self.sink = open(tmp, "w", encoding=self.cfg.data.encoding, errors="replace", newline="")  # noqa: SIM115 (commit closes it)
            self.first = f"{frame['line'].iloc[0]}: {frame['problem'].iloc[0]}"
            self.columns = list(frame.columns)
        frame.reindex(columns=self.columns).to_csv(self.sink, sep=self.cfg.data.separator, index=False, header=self.count == 0)
        self.count += len(frame)

    def commit(self) -> None:
        """Put the file in place (nothing when no row was set aside)."""
        if self.sink is not None:
            sink, self.sink = self.sink, None
            sink.close()
            self._write.__exit__(None, None, None)

    def discard(self) -> None:
        """Remove the temporary file of a job that failed (nothing after :meth:`commit`)."""
        if self.sink is not None:
            sink, self.sink = self.sink, None
            sink.close()
            failed = RuntimeError("the scoring job failed")
            self._write.__exit__(RuntimeError, failed, None)  # the temporary file is removed; dest is untouched


class _ChunkWriter:
    """Appends scored chunks, in input order, to the open temporary output ``sink`` (CSV, or
    parquet when ``parquet``) and their inputs to the temporary inputs file ``inputs`` (if
    any): ids are checked across chunks (and appended to ``ids_out``), each chunk's write runs
    in ``pool`` overlapping the next chunk, and the leads are counted per bucket and on the
    progress ``bar``. With ``rejected``, the rows set aside go there, and so does a lead whose
    id an earlier chunk had (else that is the job's failure)."""

    def __init__(
        self,
        sink: Any,
        pool: ThreadPoolExecutor,
        parquet: bool,
        id_col: str,
        ids: IdTracker,
        ids_out: list[np.ndarray] | None,
        bar: Any,
        inputs: Path | None = None,
        rejected: RejectedRows | None = None,
    ) -> None:
        self.sink, self.pool, self.parquet, self.id_col = sink, pool, parquet, id_col
        self.ids, self.ids_out, self.bar, self.rejected = ids, ids_out, bar, rejected
        self.writer: Any = None  # the parquet writer, opened with the first chunk's schema
        self.inputs_writer: Any = None  # the inputs file's writer
        if inputs is not None:
            import pyarrow.parquet as pq

            self.inputs_writer = pq.ParquetWriter(inputs, INPUTS_FILE_SCHEMA, compression="zstd")
        self.pending: list[Future[Any]] = []  # the previous chunk's writes, overlapping the next chunk
        self.total = 0
        self.buckets: dict[str, int] = {}

    def write(self, chunk: _Scored, raw: pd.DataFrame) -> None:
        """Write one scored ``chunk``; ``raw``: its rows as read (for a row set aside here)."""
        if self.rejected is not None:
            chunk, repeated = self._without_repeated_ids(chunk, raw)
            found = [f for f in (chunk.rejected, repeated) if f is not None]
            if found:  # the chunk's rows set aside, in file order
                self.rejected.add(pd.concat(found).sort_index() if len(found) > 1 else found[0])
        table, records, inputs = chunk.table, chunk.records, chunk.inputs
        if table is None:
            return
        scored_ids = table.column(self.id_col).to_numpy(zero_copy_only=False)
        self.ids.add(scored_ids, records)
        if self.ids_out is not None:
            self.ids_out.append(scored_ids)
        self.flush()
        if self.parquet:
            import pyarrow.parquet as pq

            self.writer = self.writer or pq.ParquetWriter(self.sink, table.schema)
            self.pending.append(self.pool.submit(self.writer.write_table, table))
        else:
            self.pending.append(self.pool.submit(_write_csv, table, self.sink, self.total == 0))
        if self.inputs_writer is not None:
            stamps = [table.column(c) for c in ("model_version", "scored_at")]
            self.pending.append(
                self.pool.submit(self.inputs_writer.write_table, inputs_table(table.column(self.id_col), *stamps, inputs))
            )
        self.total += table.num_rows
        for k, v in pd.Series(table.column("bucket").to_numpy(zero_copy_only=False)).value_counts().items():
            self.buckets[str(k)] = self.buckets.get(str(k), 0) + int(v)
        self.bar.update(table.num_rows)

    def _without_repeated_ids(self, chunk: _Scored, raw: pd.DataFrame) -> tuple[_Scored, pd.DataFrame | None]:
        """``chunk`` without the leads whose ids an earlier chunk scored, and those leads' rows
        set aside (:meth:`BadRows.table`; None when none), as a repeat within a chunk is
        (:meth:`LeadSchema.validate`)."""
        if chunk.table is None:
            return chunk, None
        ids = chunk.table.column(self.id_col).to_numpy(zero_copy_only=False)
        bad = BadRows()
        seen = self.ids.set_aside(ids, chunk.records, bad, self.id_col)
        if not seen.any():
            return chunk, None
        assert self.rejected is not None
        bad.rows.append(raw.set_axis([str(c).strip() for c in raw.columns], axis=1).loc[chunk.records[seen]])
        keep = pa.array(~seen)
        inputs = chunk.inputs.filter(keep) if chunk.inputs is not None else None
        return _Scored(chunk.table.filter(keep), inputs, chunk.records[~seen], chunk.rejected), bad.table()

    def flush(self) -> None:
        """Wait for the last chunk's writes, every one of them, then raise the first failure
        (a full disk): no writer may be closed while the pool still writes to it."""
        pending, self.pending = self.pending, []
        futures_wait(pending)
        for future in pending:
            future.result()

    def close(self) -> None:
        """Close the writers once no write is pending: on a failure, the writes queued after the
        failed one (the inputs file's) finish first. Closing a parquet writer that another
        thread is writing to fails in the parquet library ("Only 0 out of 4 columns are
        initialized", in place of the failure being reported) or crashes the process."""
        futures_wait(self.pending)
        self.pending = []
        if self.writer is not None:
            self.writer.close()
        if self.inputs_writer is not None:
            self.inputs_writer.close()


def _worker_pool(scorer: Any, jobs: int) -> ProcessPoolExecutor | None:
    """``jobs`` worker processes that each load the verified model once; None for one job."""
    if jobs > 1:
        if scorer.models_dir is None:
            raise LeadDataError("parallel scoring needs a models folder")
        return ProcessPoolExecutor(
            jobs,
            mp_context=get_context("spawn"),
            initializer=_worker_init,
            initargs=(scorer.cfg.model_dump(mode="json"), str(scorer.models_dir)),
        )
    return None


def _scored_chunks(
    scorer: Any,
    src: Path,
    chunk_rows: int,
    rows: RowLocator,
    job: _Job,
    procs: ProcessPoolExecutor | None,
    jobs: int,
    gaps: list[str] | None,
) -> Iterator[tuple[_Scored, pd.DataFrame]]:
    """Each chunk of ``src`` validated and scored (:class:`_Scored`) with its rows as read, in input order, while the
    next chunk is read ahead: here, or in ``procs`` with at most ``jobs + 1`` chunks in flight. ``gaps``, if given, receives
    :meth:`Scorer.input_gaps` of the file's first :data:`GAP_SAMPLE` leads."""
    origin = src.name
    in_flight: deque[Any] = deque()
    for i, raw in enumerate(_prefetch(iter_raw_chunks(src, scorer.cfg, chunk_rows))):
        if i == 0:
            names = {str(c).strip() for c in raw.columns}
            absent = [c for c in scorer.unread_columns if c not in names]
            if absent:
                log.info("%s lacks %s, which the model does not read: scored as if empty", origin, ", ".join(absent))
        if procs is None:  # validated once, for the gap check and the scores
            leads, bad = _validate_chunk(scorer, raw, origin, rows, job)
            if i == 0 and gaps is not None:
                gaps += scorer.input_gaps(leads.head(GAP_SAMPLE))
            yield _score_chunk(scorer, raw, leads, bad, job), raw
            continue
        if i == 0 and gaps is not None:  # here, the first leads; the worker validates the chunk to score it
            gaps += scorer.input_gaps(_validate_chunk(scorer, raw.head(GAP_SAMPLE), origin, rows, job)[0])
        in_flight.append((procs.submit(_worker_score, raw, origin, rows, job), raw))
        if len(in_flight) > jobs:
            future, read = in_flight.popleft()
            yield future.result(), read
    while in_flight:
        future, read = in_flight.popleft()
        yield future.result(), read


def score_stream(
    scorer: Any,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    reasons: bool = True,
    progress: bool = True,
    jobs: int = 1,
    ids_out: list[np.ndarray] | None = None,
    scored_at: str | None = None,
    inputs_path: str | os.PathLike[str] | None = None,
    check_gaps: bool = False,
    set_aside: bool | None = None,
) -> dict[str, Any]:
    """Score a file chunk by chunk (see module docstring); returns counts per bucket, and the
    fields the model reads that the file leaves empty far more often than the training leads
    did (``gaps``: :meth:`Scorer.input_gaps` of its first leads, with ``check_gaps``).
    With ``set_aside`` (default: ``scoring.bad_rows`` is "set_aside") the rows that fail
    validation are written to :func:`rejected_path` of the output (``rejected``: how many; a
    file with more than ``scoring.max_bad_share`` of its rows set aside is refused); without,
    the first such row is the job's failure.
    ``ids_out``, if given, receives the scored ids chunk by chunk (the dask engine checks
    them across files). ``scored_at`` (default: when the job starts) stamps every lead.
    ``inputs_path``, if given, receives the inputs file: each lead's input as read, with its
    id, model version and time (:mod:`leadscoring.serving.inputs`), for the score history;
    written atomically with the output.

    With ``jobs`` > 1, chunks are validated and scored in that many worker processes
    (each loads the verified model once) while this process reads ahead and writes the
    results in input order; at most ``jobs + 1`` chunks are in flight, so memory stays
    bounded.
    """
    from tqdm import tqdm

    cfg = scorer.cfg
    src, dest = Path(input_path), Path(output_path)
    if dest.suffix.lower() in SPREADSHEET_SUFFIXES:  # would be CSV text under a name a spreadsheet program refuses
        raise OutputPathError(f"{dest}: scores are written as CSV (.csv) or parquet (.parquet), not {dest.suffix}")
    if set_aside is None:
        set_aside = cfg.scoring.bad_rows == "set_aside"
    check_output(dest, inputs=[src], protected=protected_folders(cfg))
    set_aside_file = rejected_path(dest)  # written, or an earlier run's removed: never the input
    linked = set_aside_file.exists() and src.exists() and os.path.samefile(set_aside_file, src)
    if set_aside_file.resolve() == src.resolve() or linked:
        raise OutputPathError(
            f"{dest}: its rejected-rows file {set_aside_file.name} is the input; name the output otherwise (e.g. "
            f"{dest.stem}_fixed{dest.suffix})"
        )
    rows = row_locator(src, cfg)
    ids = IdTracker(src.name, rows)
    procs = _worker_pool(scorer, jobs)
    rejected = RejectedRows(set_aside_file, cfg) if set_aside else None
    try:
        with contextlib.ExitStack() as stack:
            # the inputs file first, so that a failure (a full disk) is reported by the output's own
            # atomic write, which is entered last and so unwinds first, naming the output
            tmp_inputs = stack.enter_context(atomic_path(inputs_path)) if inputs_path is not None else None
            tmp = stack.enter_context(atomic_path(dest))
            sink = stack.enter_context(open(tmp, "wb"))
            pool = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="write"))
            bar = tqdm(desc=f"scoring {src.name}", unit=" leads", disable=not progress, mininterval=1.0)
            out = _ChunkWriter(sink, pool, is_parquet(dest), cfg.data.id_column, ids, ids_out, bar, tmp_inputs, rejected)
            gaps: list[str] | None = [] if check_gaps else None
            try:
                job = _Job(reasons, is_parquet(dest), scored_at or utc_now(), inputs=tmp_inputs is not None, set_aside=set_aside)
                for chunk, raw in _scored_chunks(scorer, src, chunk_rows, rows, job, procs, jobs, gaps):
                    out.write(chunk, raw)
                out.flush()
                if rejected is not None:
                    check_bad_share(src.name, rejected.count, rejected.count + out.total, cfg.scoring.max_bad_share, rejected.first)
            finally:
                bar.close()
                if procs is not None:
                    procs.shutdown(wait=True, cancel_futures=True)
                out.close()
    except BaseException:
        if rejected is not None:  # a failed job leaves no rejected rows behind
            rejected.discard()
        raise
    if rejected is not None:  # the scores (and inputs) are in place: the rows set aside join them
        rejected.commit()
    log.info("scored %d leads -> %s", out.total, dest)
    set_aside_rows = rejected.count if rejected is not None else 0
    if set_aside_rows:
        log.info("%s: %d row(s) set aside -> %s; the first: %s", src.name, set_aside_rows, set_aside_file, rejected.first)
    elif set_aside_file.is_file():  # an earlier run's: not about this output
        set_aside_file.unlink()
    first = rejected.first if rejected is not None else ""
    return {"leads": out.total, "buckets": out.buckets, "gaps": gaps or [], "rejected": set_aside_rows, "first_rejected": first}


def score_file(
    cfg: ProjectConfig,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    models_dir: str | os.PathLike[str] | None = None,
    reasons: bool = True,
    chunk_rows: int | None = None,
    progress: bool = False,
    jobs: int = 1,
    scored_at: str | None = None,
    inputs_path: str | os.PathLike[str] | None = None,
    bad_rows: str | None = None,
) -> dict[str, Any]:
    """Read leads (raw layout, CSV or parquet; a target column, if present, is ignored),
    score them chunk by chunk and write CSV (or parquet for a ``.parquet`` output)
    atomically, with ``jobs`` worker processes; with ``inputs_path``, the leads' inputs too
    (see :func:`score_stream`). ``bad_rows`` (default ``scoring.bad_rows``): "stop" or
    "set_aside". Returns ``{"leads": n, "buckets": {...}, "gaps": [...], "rejected": n}``
    (fields the file lacks, see :meth:`Scorer.input_gaps`; rows set aside)."""
    scorer = Scorer.load(cfg, models_dir)
    return score_stream(
        scorer,
        input_path,
        output_path,
        chunk_rows=chunk_rows or DEFAULT_CHUNK_ROWS,
        reasons=reasons,
        progress=progress,
        jobs=jobs,
        scored_at=scored_at,
        inputs_path=inputs_path,
        check_gaps=True,
        set_aside=None if bad_rows is None else bad_rows == "set_aside",
    )


def csv_from_parquet(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """The CSV twin of a parquet scores file (same leads, same stamps; ``reasons`` as the
    readable line), written atomically."""
    import pyarrow.parquet as pq

    table = reasons_as_text(pq.read_table(src))
    with atomic_path(dest) as tmp, open(tmp, "wb") as sink:
        _write_csv(table, sink, True)
    return Path(dest)
