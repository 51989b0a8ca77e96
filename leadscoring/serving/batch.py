"""Batch scoring at scale: streaming chunks locally, or one task per file on a dask cluster.

Local engine: the input (CSV or parquet) is read in chunks by the one reader
(:mod:`leadscoring.ingest.reader`); each chunk is validated (with the file's line numbers in any
error, and ids checked for duplicates across chunks), scored and appended to a temporary
output that is renamed over the destination only when every chunk succeeded. Memory
stays bounded by the chunk size.

Dask engine: every input file matching a glob is one task that runs the local engine on
it (same reader, same rules, same line numbers) and writes one part; ids are checked for
duplicates across files before the folder of parts replaces the destination.

"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscoring.config import ProjectConfig
from leadscoring.errors import LeadDataError
from leadscoring.ingest.reader import DEFAULT_CHUNK_ROWS, RowLocator, is_parquet, iter_raw_chunks, row_locator
from leadscoring.ingest.schema import IdTracker, validate_leads
from leadscoring.io import atomic_path, check_output
from leadscoring.serving.scorer import Scorer

log = logging.getLogger(__name__)


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


def _chunk_table(scorer: Any, raw: pd.DataFrame, origin: str, rows: RowLocator, factors: bool) -> Any:
    """Validate and score one raw chunk; the scores as an Arrow table."""
    import pyarrow as pa

    leads = validate_leads(raw, scorer.cfg, require_target=False, origin=origin, rows=rows)
    cols = scorer.score_columns(leads, factors=factors)
    return pa.table({k: pa.array(v, type=pa.string() if v.dtype == object else None) for k, v in cols.items()})


_WORKER: dict[str, Any] = {}


def _worker_init(config_path: str, models_dir: str) -> None:
    from leadscoring.config import load_config

    _WORKER["scorer"] = Scorer.load(load_config(config_path), models_dir)


def _worker_score(raw: pd.DataFrame, origin: str, rows: RowLocator, factors: bool) -> Any:
    return _chunk_table(_WORKER["scorer"], raw, origin, rows, factors)


def protected_folders(cfg: ProjectConfig) -> list[Path]:
    """Folders no output may be written into: the raw exports'."""
    return [cfg.path("raw_data").parent]


def score_stream(scorer: Any, input_path: str | os.PathLike[str], output_path: str | os.PathLike[str], *,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS, factors: bool = True, progress: bool = True,
                 jobs: int = 1, ids_out: list[np.ndarray] | None = None) -> dict[str, Any]:
    """Score a file chunk by chunk (see module docstring); returns counts per bucket.
    ``ids_out``, if given, receives the scored ids chunk by chunk (the dask engine checks
    them across files).

    With ``jobs`` > 1, chunks are validated and scored in that many worker processes
    (each loads the verified model once) while this process reads ahead and writes the
    results in input order; at most ``jobs + 1`` chunks are in flight, so memory stays
    bounded.
    """
    import pyarrow.parquet as pq
    from tqdm import tqdm

    cfg = scorer.cfg
    src, dest = Path(input_path), Path(output_path)
    check_output(dest, inputs=[src], protected=protected_folders(cfg))
    origin, rows, parquet_out = src.name, row_locator(src, cfg), is_parquet(dest)
    id_col = cfg.data.id_column
    ids = IdTracker(origin, rows)
    total, buckets = 0, {}
    procs = None
    if jobs > 1:
        if cfg.source is None or scorer.models_dir is None:
            raise LeadDataError("parallel scoring needs a configuration file and a models folder")
        procs = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_worker_init,
                                    initargs=(str(cfg.source), str(scorer.models_dir)))
    with atomic_path(dest) as tmp, open(tmp, "wb") as sink, ThreadPoolExecutor(1, thread_name_prefix="write") as pool:
        writer, pending = None, None  # pending: the previous chunk's write, overlapping the next chunk
        in_flight: deque[Any] = deque()
        bar = tqdm(desc=f"scoring {src.name}", unit=" leads", disable=not progress, mininterval=1.0)

        def write(table: Any, records: pd.Index) -> None:
            nonlocal writer, pending, total
            scored_ids = table.column(id_col).to_numpy(zero_copy_only=False)
            ids.add(scored_ids, records)
            if ids_out is not None:
                ids_out.append(scored_ids)
            if pending is not None:
                pending.result()
            if parquet_out:
                writer = writer or pq.ParquetWriter(sink, table.schema)
                pending = pool.submit(writer.write_table, table)
            else:
                pending = pool.submit(_write_csv, table, sink, total == 0)
            total += table.num_rows
            for k, v in pd.Series(table.column("bucket").to_numpy(zero_copy_only=False)).value_counts().items():
                buckets[str(k)] = buckets.get(str(k), 0) + int(v)
            bar.update(table.num_rows)

        try:
            for raw in _prefetch(iter_raw_chunks(src, cfg, chunk_rows)):
                if procs is None:
                    write(_chunk_table(scorer, raw, origin, rows, factors), raw.index)
                    continue
                in_flight.append((procs.submit(_worker_score, raw, origin, rows, factors), raw.index))
                if len(in_flight) > jobs:
                    future, records = in_flight.popleft()
                    write(future.result(), records)
            while in_flight:
                future, records = in_flight.popleft()
                write(future.result(), records)
            if pending is not None:
                pending.result()
        finally:
            bar.close()
            if procs is not None:
                procs.shutdown(wait=True, cancel_futures=True)
            if writer is not None:
                writer.close()
    log.info("scored %d leads -> %s", total, dest)
    return {"leads": total, "buckets": buckets}


def score_file(
    cfg: ProjectConfig, input_path: str | os.PathLike[str], output_path: str | os.PathLike[str], *,
    models_dir: str | os.PathLike[str] | None = None, factors: bool = True, chunk_rows: int | None = None,
    progress: bool = False, jobs: int = 1,
) -> dict[str, Any]:
    """Read leads (raw layout, CSV or parquet; a target column, if present, is ignored),
    score them chunk by chunk and write CSV (or parquet for a ``.parquet`` output)
    atomically, with ``jobs`` worker processes. Returns ``{"leads": n, "buckets": {...}}``."""
    scorer = Scorer.load(cfg, models_dir)
    return score_stream(scorer, input_path, output_path, chunk_rows=chunk_rows or DEFAULT_CHUNK_ROWS,
                        factors=factors, progress=progress, jobs=jobs)

