"""Batch scoring at scale: streaming chunks locally, or dask partitions on a cluster.

Local engine: the input (CSV or parquet) is read in chunks with pyarrow; each chunk is
validated (with the file's line numbers in any error, and ids checked for duplicates
across chunks), scored and appended to a temporary output that is renamed over the
destination only when every chunk succeeded. Memory stays bounded by the chunk size.

Dask engine: the same validation and scoring applied per partition with
``dask.dataframe.map_partitions``; input may be a glob; output is a folder of parts.
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

from .config import ProjectConfig
from .data import LeadDataError, validate_leads
from .io import atomic_path

log = logging.getLogger(__name__)
DEFAULT_CHUNK_ROWS = 100_000


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in {".parquet", ".pq"}


def iter_raw_chunks(path: str | os.PathLike[str], cfg: ProjectConfig, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Raw chunks as string columns; the index of each chunk is its 0-based row number in the file."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise LeadDataError(f"{path}: file not found")
    offset = 0
    if _is_parquet(path):
        batches = pq.ParquetFile(path).iter_batches(batch_size=chunk_rows)
    else:
        d = cfg.data
        try:
            header = path.open(encoding=d.encoding).readline().rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise LeadDataError(f"{path.name}: not readable as {d.encoding} ({exc.reason})") from None
        if not header:
            raise LeadDataError(f"{path.name}: the file is empty (no header, no leads)")
        names = [c.strip() for c in header.split(d.separator)]
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=1 << 22, encoding=d.encoding),
            parse_options=pacsv.ParseOptions(delimiter=d.separator),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
        batches = iter(reader)
    pending: list[pd.DataFrame] = []
    size = 0
    try:
        for batch in batches:
            df = batch.to_pandas()
            pending.append(df)
            size += len(df)
            while size >= chunk_rows:
                whole = pd.concat(pending, ignore_index=True)
                chunk, rest = whole.iloc[:chunk_rows], whole.iloc[chunk_rows:]
                chunk.index = pd.RangeIndex(offset, offset + len(chunk))
                offset += len(chunk)
                yield chunk
                pending, size = ([rest] if len(rest) else []), len(rest)
    except pa.ArrowInvalid as exc:
        raise LeadDataError(f"{path.name}: malformed input near row {offset + size + 2}: {exc}".splitlines()[0]) from None
    if pending:
        chunk = pd.concat(pending, ignore_index=True)
        chunk.index = pd.RangeIndex(offset, offset + len(chunk))
        yield chunk
    elif offset == 0:
        raise LeadDataError(f"{path.name}: no leads (the file has a header but no rows)")


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


def _chunk_table(scorer: Any, raw: pd.DataFrame, origin: str, from_file: bool, factors: bool) -> Any:
    """Validate and score one raw chunk; the scores as an Arrow table."""
    import pyarrow as pa

    leads = validate_leads(raw, scorer.cfg, require_target=False, origin=origin, from_file=from_file)
    cols = scorer.score_columns(leads, factors=factors)
    return pa.table({k: pa.array(v, type=pa.string() if v.dtype == object else None) for k, v in cols.items()})


_WORKER: dict[str, Any] = {}


def _worker_init(config_path: str, models_dir: str) -> None:
    from .config import load_config
    from .scoring import Scorer

    _WORKER["scorer"] = Scorer.load(load_config(config_path), models_dir)


def _worker_score(raw: pd.DataFrame, origin: str, from_file: bool, factors: bool) -> Any:
    return _chunk_table(_WORKER["scorer"], raw, origin, from_file, factors)


def _check_new_ids(raw: pd.DataFrame, id_column: str, seen: set[str], origin: str, from_file: bool) -> None:
    """Ids must be unique across chunks (each chunk checks its own duplicates)."""
    ids = np.asarray(raw[id_column].astype("string").str.strip(), dtype=object)
    dup = np.fromiter((x in seen for x in ids), dtype=bool, count=len(ids))  # (Series.isin(set) is far slower)
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        row = int(raw.index[i])
        where = f"line {row + 2}" if from_file else f"row {row}"
        raise LeadDataError(f"{origin}: duplicate id {ids[i]!r} ({where}) already seen earlier in the file")
    seen.update(x for x in ids if isinstance(x, str))


def score_stream(scorer: Any, input_path: str | os.PathLike[str], output_path: str | os.PathLike[str], *,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS, factors: bool = True, progress: bool = True,
                 jobs: int = 1) -> dict[str, Any]:
    """Score a file chunk by chunk (see module docstring); returns counts per bucket.

    With ``jobs`` > 1, chunks are validated and scored in that many worker processes
    (each loads the verified model once) while this process reads ahead and writes the
    results in input order; at most ``jobs + 1`` chunks are in flight, so memory stays
    bounded.
    """
    import pyarrow.parquet as pq
    from tqdm import tqdm

    cfg = scorer.cfg
    src, dest = Path(input_path), Path(output_path)
    origin, from_file, parquet_out = src.name, not _is_parquet(src), _is_parquet(dest)
    seen: set[str] = set()
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

        def write(table: Any) -> None:
            nonlocal writer, pending, total
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
                _check_new_ids(raw, cfg.data.id_column, seen, origin, from_file)
                if procs is None:
                    write(_chunk_table(scorer, raw, origin, from_file, factors))
                    continue
                in_flight.append(procs.submit(_worker_score, raw, origin, from_file, factors))
                if len(in_flight) > jobs:
                    write(in_flight.popleft().result())
            while in_flight:
                write(in_flight.popleft().result())
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


# -- dask engine ------------------------------------------------------------------------

_SCORERS: dict[str, Any] = {}


def _score_partition(part: pd.DataFrame, config_path: str, models_dir: str | None, factors: bool,
                     columns: list[str]) -> pd.DataFrame:
    """Validate and score one partition (the scorer is loaded once per worker process)."""
    from .config import load_config
    from .scoring import Scorer

    key = f"{config_path}|{models_dir}"
    if key not in _SCORERS:
        _SCORERS[key] = Scorer.load(load_config(config_path), models_dir)
    scorer = _SCORERS[key]
    if len(part) == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    leads = validate_leads(part, scorer.cfg, require_target=False, origin="partition")
    return pd.DataFrame(scorer.score_columns(leads, factors=factors))[columns]


def score_dask(cfg: ProjectConfig, input_glob: str, output_dir: str | os.PathLike[str], *,
               models_dir: str | os.PathLike[str] | None = None, scheduler: str | None = None, workers: int = 2,
               factors: bool = True, blocksize: str = "64MB") -> dict[str, Any]:
    """Score CSV/parquet files matching ``input_glob`` with dask; writes ``output_dir/part-*.csv``
    (or ``.parquet`` parts if the input is parquet). ``scheduler``: address of an existing
    cluster; default a local cluster with ``workers`` single-threaded workers."""
    import dask.dataframe as dd
    from dask.distributed import Client, LocalCluster

    from .scoring import Scorer

    if cfg.source is None:
        raise LeadDataError("the dask engine needs a configuration loaded from a file")
    probe = Scorer.load(cfg, models_dir)  # fail fast, here, on a bad model
    columns = [cfg.data.id_column, "probability", "score", "bucket", "recommended_action"]
    columns += ["segment"] if probe.segmenter is not None else []
    columns += ["top_factors"] if factors and cfg.scoring.top_factors > 0 else []
    parquet_in = input_glob.lower().endswith((".parquet", ".pq"))
    if parquet_in:
        ddf = dd.read_parquet(input_glob)
    else:
        ddf = dd.read_csv(input_glob, sep=cfg.data.separator, dtype=str, keep_default_na=False,
                          encoding=cfg.data.encoding, blocksize=blocksize)
    meta = pd.DataFrame({c: pd.Series(dtype="float64" if c == "probability" else ("int64" if c == "score" else object))
                         for c in columns})
    scored = ddf.map_partitions(_score_partition, str(cfg.source), str(models_dir) if models_dir else None, factors,
                                columns, meta=meta)
    out = Path(output_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                  dashboard_address=None)
    with Client(scheduler or cluster) as client:
        log.info("dask engine on %s", client.scheduler.address if hasattr(client.scheduler, "address") else scheduler)
        if parquet_in:
            scored.to_parquet(tmp, write_index=False)
        else:
            scored.to_csv(str(tmp / "part-*.csv"), index=False)
    if cluster is not None:
        cluster.close()
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return {"output": str(out), "partitions": int(scored.npartitions)}
