"""Batch scoring of a file, streamed in chunks (the local engine; ``score_file``).

The input (CSV or parquet) is read in chunks by the one reader
(:mod:`leadscoring.ingest.reader`); each chunk is validated (with the file's line numbers
in any error, and ids checked for duplicates across chunks), scored and appended to a
temporary output that is renamed over the destination only when every chunk succeeded.
Memory stays bounded by the chunk size. The dask engine
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

from leadscoring.config import ProjectConfig
from leadscoring.errors import LeadDataError
from leadscoring.ingest.load import IdTracker
from leadscoring.ingest.reader import DEFAULT_CHUNK_ROWS, RowLocator, is_parquet, iter_raw_chunks, row_locator
from leadscoring.ingest.schema import validate_leads
from leadscoring.io import atomic_path, check_output
from leadscoring.serving.inputs import INPUTS_FILE_SCHEMA, inputs_table, raw_inputs
from leadscoring.serving.outputs import arrow_table, reasons_as_text
from leadscoring.serving.scorer import Scorer, utc_now

log = logging.getLogger(__name__)

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


def _chunk_table(scorer: Any, raw: pd.DataFrame, origin: str, rows: RowLocator, job: _Job) -> tuple[Any, Any]:
    """Validate and score one raw chunk; the scores as an Arrow table, and (when the job keeps
    them) the leads' inputs as read (:func:`~leadscoring.serving.inputs.raw_inputs`)."""
    leads = validate_leads(raw, scorer.cfg, require_target=False, origin=origin, rows=rows, may_lack=scorer.unread_columns)
    cols = scorer.score_columns(leads, reasons=job.reasons, scored_at=job.scored_at)
    return arrow_table(cols, text_reasons=not job.parquet), (raw_inputs(scorer.cfg, raw) if job.inputs else None)


@dataclass(frozen=True)
class _Job:
    """What every chunk of one scoring job shares."""

    reasons: bool  # reasons, fit and engagement scores
    parquet: bool  # structured reasons (else one readable line, for CSV)
    scored_at: str
    inputs: bool = False  # keep the leads' inputs (an inputs file)


_WORKER: dict[str, Any] = {}


def _worker_init(config: dict[str, Any], models_dir: str) -> None:
    # The configuration travels as data: the same settings (score history included) as the parent.
    _WORKER["scorer"] = Scorer.load(ProjectConfig.model_validate(config), models_dir, check_experiment=False)  # checked by the job


def _worker_score(raw: pd.DataFrame, origin: str, rows: RowLocator, job: _Job) -> tuple[Any, Any]:
    return _chunk_table(_WORKER["scorer"], raw, origin, rows, job)


def protected_folders(cfg: ProjectConfig) -> list[Path]:
    """Folders no output may be written into: the raw exports'."""
    return [cfg.path("raw_data").parent]


class _ChunkWriter:
    """Appends scored chunks, in input order, to the open temporary output ``sink`` (CSV, or
    parquet when ``parquet``) and their inputs to the temporary inputs file ``inputs`` (if
    any): ids are checked across chunks (and appended to ``ids_out``), each chunk's write runs
    in ``pool`` overlapping the next chunk, and the leads are counted per bucket and on the
    progress ``bar``."""

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
    ) -> None:
        self.sink, self.pool, self.parquet, self.id_col = sink, pool, parquet, id_col
        self.ids, self.ids_out, self.bar = ids, ids_out, bar
        self.writer: Any = None  # the parquet writer, opened with the first chunk's schema
        self.inputs_writer: Any = None  # the inputs file's writer
        if inputs is not None:
            import pyarrow.parquet as pq

            self.inputs_writer = pq.ParquetWriter(inputs, INPUTS_FILE_SCHEMA, compression="zstd")
        self.pending: list[Future[Any]] = []  # the previous chunk's writes, overlapping the next chunk
        self.total = 0
        self.buckets: dict[str, int] = {}

    def write(self, table: Any, records: pd.Index, inputs: Any = None) -> None:
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
) -> Iterator[tuple[tuple[Any, Any], pd.Index]]:
    """Each chunk of ``src`` validated and scored (an Arrow table, and the inputs if kept) with
    its row labels, in input order, while the next chunk is read ahead: here, or in ``procs``
    with at most ``jobs + 1`` chunks in flight. ``gaps``, if given, receives
    :meth:`Scorer.input_gaps` of the file's first :data:`GAP_SAMPLE` leads."""
    origin = src.name
    in_flight: deque[Any] = deque()
    for i, raw in enumerate(_prefetch(iter_raw_chunks(src, scorer.cfg, chunk_rows))):
        if i == 0:
            names = {str(c).strip() for c in raw.columns}
            absent = [c for c in scorer.unread_columns if c not in names]
            if absent:
                log.info("%s lacks %s, which the model does not read: scored as if empty", origin, ", ".join(absent))
        if i == 0 and gaps is not None:
            first = validate_leads(
                raw.head(GAP_SAMPLE), scorer.cfg, require_target=False, origin=origin, rows=rows, may_lack=scorer.unread_columns
            )
            gaps += scorer.input_gaps(first)
        if procs is None:
            yield _chunk_table(scorer, raw, origin, rows, job), raw.index
            continue
        in_flight.append((procs.submit(_worker_score, raw, origin, rows, job), raw.index))
        if len(in_flight) > jobs:
            future, records = in_flight.popleft()
            yield future.result(), records
    while in_flight:
        future, records = in_flight.popleft()
        yield future.result(), records


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
) -> dict[str, Any]:
    """Score a file chunk by chunk (see module docstring); returns counts per bucket, and the
    fields the model reads that the file leaves empty far more often than the training leads
    did (``gaps``: :meth:`Scorer.input_gaps` of its first leads, with ``check_gaps``).
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
    check_output(dest, inputs=[src], protected=protected_folders(cfg))
    rows = row_locator(src, cfg)
    ids = IdTracker(src.name, rows)
    procs = _worker_pool(scorer, jobs)
    with contextlib.ExitStack() as stack:
        # the inputs file first, so that a failure (a full disk) is reported by the output's own
        # atomic write, which is entered last and so unwinds first, naming the output
        tmp_inputs = stack.enter_context(atomic_path(inputs_path)) if inputs_path is not None else None
        tmp = stack.enter_context(atomic_path(dest))
        sink = stack.enter_context(open(tmp, "wb"))
        pool = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="write"))
        bar = tqdm(desc=f"scoring {src.name}", unit=" leads", disable=not progress, mininterval=1.0)
        out = _ChunkWriter(sink, pool, is_parquet(dest), cfg.data.id_column, ids, ids_out, bar, tmp_inputs)
        gaps: list[str] | None = [] if check_gaps else None
        try:
            job = _Job(reasons, is_parquet(dest), scored_at or utc_now(), inputs=tmp_inputs is not None)
            for (table, inputs), records in _scored_chunks(scorer, src, chunk_rows, rows, job, procs, jobs, gaps):
                out.write(table, records, inputs)
            out.flush()
        finally:
            bar.close()
            if procs is not None:
                procs.shutdown(wait=True, cancel_futures=True)
            out.close()
    log.info("scored %d leads -> %s", out.total, dest)
    return {"leads": out.total, "buckets": out.buckets, "gaps": gaps or []}


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
) -> dict[str, Any]:
    """Read leads (raw layout, CSV or parquet; a target column, if present, is ignored),
    score them chunk by chunk and write CSV (or parquet for a ``.parquet`` output)
    atomically, with ``jobs`` worker processes; with ``inputs_path``, the leads' inputs too
    (see :func:`score_stream`). Returns ``{"leads": n, "buckets": {...}, "gaps": [...]}``
    (fields the file lacks, see :meth:`Scorer.input_gaps`)."""
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
    )


def csv_from_parquet(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """The CSV twin of a parquet scores file (same leads, same stamps; ``reasons`` as the
    readable line), written atomically."""
    import pyarrow.parquet as pq

    table = reasons_as_text(pq.read_table(src))
    with atomic_path(dest) as tmp, open(tmp, "wb") as sink:
        _write_csv(table, sink, True)
    return Path(dest)
