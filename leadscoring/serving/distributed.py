"""The dask engine: every input file matching a glob is one task that runs the local
engine on it (same reader, same rules, same line numbers) and writes one part; ids are
checked for duplicates across files before the folder of parts replaces the destination.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from leadscoring.config import ProjectConfig
from leadscoring.errors import LeadDataError
from leadscoring.ingest.reader import DEFAULT_CHUNK_ROWS, is_parquet
from leadscoring.io import check_output
from leadscoring.serving.batch import protected_folders, score_stream
from leadscoring.serving.history import ScoreHistory
from leadscoring.serving.scorer import Scorer, utc_now

_SCORERS: dict[str, Any] = {}


def _score_one_file(path: str, dest: str, config_path: str, models_dir: str | None, factors: bool,
                    chunk_rows: int, scored_at: str, history: str) -> dict[str, Any]:
    """One dask task: the local engine on one input file (the scorer is loaded once per
    worker process). Returns counts and the scored ids, checked across files by the client."""
    from leadscoring.config import load_config

    key = f"{config_path}|{models_dir}"
    if key not in _SCORERS:
        _SCORERS[key] = Scorer.load(load_config(config_path), models_dir)
    if str(getattr(_SCORERS[key].history, "path", "")) != history:  # the client's history, for the trend
        _SCORERS[key].history = ScoreHistory(history)
    ids: list[np.ndarray] = []
    res = score_stream(_SCORERS[key], path, dest, chunk_rows=chunk_rows, factors=factors, progress=False, ids_out=ids,
                       scored_at=scored_at)
    return {**res, "file": Path(path).name, "ids": np.concatenate(ids) if ids else np.array([], dtype=object)}


def _check_ids_across_files(results: list[dict[str, Any]]) -> None:
    first: dict[str, str] = {}
    for res in results:
        for lead in res["ids"]:
            other = first.setdefault(lead, res["file"])
            if other != res["file"]:
                raise LeadDataError(f"duplicate id {lead!r}: in {other} and in {res['file']}")


def score_dask(cfg: ProjectConfig, input_glob: str, output_dir: str | os.PathLike[str], *,
               models_dir: str | os.PathLike[str] | None = None, scheduler: str | None = None, workers: int = 2,
               factors: bool = True, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> dict[str, Any]:
    """Score the CSV/parquet files matching ``input_glob`` with dask, one task per file;
    writes ``output_dir/part-NNNNN.csv`` (``.parquet`` parts for parquet input) in file-name
    order. ``scheduler``: address of an existing cluster; default a local cluster with
    ``workers`` single-threaded workers. The destination is replaced only when every file
    was scored and no id occurs in two files."""
    import glob
    import shutil

    from dask.distributed import Client, LocalCluster

    if cfg.source is None:
        raise LeadDataError("the dask engine needs a configuration loaded from a file")
    files = sorted(glob.glob(input_glob))
    if not files:
        raise LeadDataError(f"{input_glob}: no file matches")
    out = Path(output_dir)
    check_output(out, inputs=files, protected=protected_folders(cfg), folder=True)
    if out.is_dir() and any(not (p.name.startswith("part-") or p.name == "_SUCCESS") for p in out.iterdir()):
        raise LeadDataError(f"{out}: exists and holds other files than scored parts; choose a new or empty folder")
    Scorer.load(cfg, models_dir)  # fail fast, here, on a bad model
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    suffix = ".parquet" if is_parquet(files[0]) else ".csv"
    cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                  dashboard_address=None)
    try:
        with Client(scheduler or cluster) as client:
            futures = client.map(_score_one_file, files, [str(tmp / f"part-{i:05d}{suffix}") for i in range(len(files))],
                                 config_path=str(cfg.source), models_dir=str(models_dir) if models_dir else None,
                                 factors=factors, chunk_rows=chunk_rows, scored_at=utc_now(),
                                 history=str(cfg.path("score_history")), pure=False)
            results = client.gather(futures)
        _check_ids_across_files(results)
        (tmp / "_SUCCESS").touch()
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if cluster is not None:
            cluster.close()
        shutil.rmtree(tmp, ignore_errors=True)
    buckets: dict[str, int] = {}
    for res in results:
        for k, v in res["buckets"].items():
            buckets[k] = buckets.get(k, 0) + v
    return {"output": str(out), "partitions": len(files), "leads": sum(r["leads"] for r in results),
            "buckets": buckets}

