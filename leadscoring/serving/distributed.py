"""The dask engine: the local engine once per input file, on a local or remote cluster.

The client verifies the models once (hash and library versions, as the local engine does)
and sends their bytes, their manifests, the configuration (as data, not a path) and the
score history's latest scores to the workers with the task graph (``Client.scatter``,
once per worker). Each worker checks the bytes' hash and its own library versions against
the manifest before unpickling (a worker with other versions is refused, naming it), and
keeps one scorer per process. Workers need only the package installed; they never read the
client's configuration, models or history files.

Inputs and the output folder are paths or URLs (:mod:`leadscoring.serving.storage`): each
worker fetches its file, scores it with the local engine (same reader, rules and one-line
errors, naming the file and line) and writes its part under a temporary prefix; the client
checks ids across files and commits the parts with ``_SUCCESS`` last, so a failed job leaves
the previous output as it was. Each worker sends back its leads' ids, scores and inputs as
read (:mod:`leadscoring.serving.inputs`); the client appends them to the score history.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from leadscoring.artifacts import SCORE_MODEL, SEGMENT_MODEL, check_versions_match, model_from_bytes, verify_model
from leadscoring.config import ProjectConfig
from leadscoring.errors import LeadDataError
from leadscoring.ingest.reader import DEFAULT_CHUNK_ROWS, is_parquet
from leadscoring.io import check_output
from leadscoring.serving.batch import protected_folders, score_stream
from leadscoring.serving.experiment import GROUP_FIELD, check_groups, experiment_groups
from leadscoring.serving.history import append_scores, scores_of
from leadscoring.serving.inputs import INPUTS_COLUMN
from leadscoring.serving.scorer import Scorer, previous_scores_of, utc_now
from leadscoring.serving.storage import (
    check_destination,
    commit,
    discard,
    expand,
    fetch,
    is_local,
    local_path,
    publish,
    temporary_prefix,
)

log = logging.getLogger(__name__)

_SCORERS: dict[str, Scorer] = {}
#: Scorers kept per worker process: the current model and the one before (a job that started
#: before a retrain); older ones are dropped so a long-lived worker does not grow.
MAX_SCORERS = 2


class PreviousScores:
    """The latest score per lead id, as sent by the client (the history's ``lookup``)."""

    def __init__(self, latest: pd.Series) -> None:
        self.latest = latest.set_axis(latest.index.astype(str))

    def lookup(self, ids: Any) -> np.ndarray:
        return scores_of(self.latest, ids)


@dataclass
class ModelPayload:
    """Everything a worker needs to score, as data: verified model bytes and manifests, the
    configuration and the latest previous scores."""

    config: dict[str, Any]
    model: bytes
    manifest: dict[str, Any]
    segments: bytes | None = None
    segment_manifest: dict[str, Any] | None = None
    previous: pd.Series = field(default_factory=lambda: pd.Series(dtype="float64"))

    @classmethod
    def from_client(cls, cfg: ProjectConfig, models_dir: str | os.PathLike[str] | None = None) -> ModelPayload:
        check_groups(cfg.experiment, cfg.path("score_history"))  # the workers score with these settings
        folder = Path(models_dir) if models_dir is not None else cfg.path("models_dir")
        manifest = verify_model(folder / SCORE_MODEL)
        segments, seg_manifest = None, None
        if (folder / SEGMENT_MODEL).is_file():
            seg_manifest = verify_model(folder / SEGMENT_MODEL)
            segments = (folder / SEGMENT_MODEL).read_bytes()
        return cls(
            cfg.model_dump(mode="json"),
            (folder / SCORE_MODEL).read_bytes(),
            manifest,
            segments,
            seg_manifest,
            history.latest() if (history := previous_scores_of(cfg)) is not None else pd.Series(dtype="float64"),
        )

    def scorer(self, where: str) -> Scorer:
        """The scorer of this worker process (built once per model), after the checks."""
        key = str(self.manifest["sha256"])
        check_versions_match(self.manifest, str(self.manifest.get("file", SCORE_MODEL)), where)  # every task
        if key not in _SCORERS:
            cfg = ProjectConfig.model_validate(self.config)
            model = model_from_bytes(self.model, self.manifest, where=where)
            seg = model_from_bytes(self.segments, self.segment_manifest or {}, where=where) if self.segments else None
            scorer = Scorer(cfg, model, self.manifest, seg, self.segment_manifest)
            scorer.history = PreviousScores(self.previous)  # type: ignore[assignment]
            while len(_SCORERS) >= MAX_SCORERS:
                _SCORERS.pop(next(iter(_SCORERS)))
            _SCORERS[key] = scorer
        return _SCORERS[key]


def _worker_name() -> str:
    try:
        from dask.distributed import get_worker

        return f"worker {get_worker().address}"
    except (ImportError, ValueError):
        return "here"


def _score_partition(
    src: str, dest: str, payload: ModelPayload, reasons: bool, chunk_rows: int, scored_at: str, inputs: bool = True
) -> dict[str, Any]:
    """One dask task: fetch one input file, score it with the local engine, publish the part.
    Returns counts, the scored ids (checked across files by the client), their scores and,
    with ``inputs``, their inputs as read (for the client's score history)."""
    scorer = payload.scorer(_worker_name())
    with tempfile.TemporaryDirectory(prefix="leadscoring-") as tmp:
        local_src = fetch(src, Path(tmp))
        local_out = Path(tmp) / "out" / Path(dest).name
        local_out.parent.mkdir()
        local_inputs = Path(tmp) / "inputs.parquet" if inputs else None
        ids: list[np.ndarray] = []
        try:
            res = score_stream(
                scorer,
                local_src,
                local_out,
                chunk_rows=chunk_rows,
                reasons=reasons,
                progress=False,
                ids_out=ids,
                scored_at=scored_at,
                inputs_path=local_inputs,
                set_aside=False,  # a bad row refuses the file (no rejected-rows file per part)
            )
        except LeadDataError as exc:  # name a remote file by its URL, as the local engine names a file
            raise (LeadDataError(str(exc).replace(local_src.name, src, 1)) if not is_local(src) else exc) from None
        scores = _read_scores_column(local_out)
        kept = _read_inputs_column(local_inputs, len(scores))
        publish(local_out, dest)
    scored = np.concatenate(ids) if ids else np.array([], dtype=object)
    return {**res, "file": local_path(src).name if is_local(src) else src, "ids": scored, "scores": scores, "inputs": kept}


def _read_inputs_column(path: Path | None, n: int) -> pa.ChunkedArray:
    """The inputs of a finished part, in its leads' order (none kept: ``n`` nulls)."""
    import pyarrow.parquet as pq

    if path is None:
        return pa.chunked_array([pa.nulls(n, pa.string())])
    return pq.read_table(path, columns=[INPUTS_COLUMN]).column(INPUTS_COLUMN)


def _read_scores_column(path: Path) -> np.ndarray:
    """The ``score`` column of a finished part (for the client's score history)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if is_parquet(path):
        return pq.read_table(path, columns=["score"]).column("score").to_numpy()
    opts = pacsv.ConvertOptions(include_columns=["score"])
    return pacsv.read_csv(path, convert_options=opts).column("score").to_numpy()


def _check_ids_across_files(results: list[dict[str, Any]]) -> None:
    first: dict[str, str] = {}
    for res in results:
        for lead in res["ids"]:
            other = first.setdefault(lead, res["file"])
            if other != res["file"]:
                raise LeadDataError(f"duplicate id {lead!r}: in {other} and in {res['file']}")


def _check_paths(cfg: ProjectConfig, files: list[str], dest: str) -> None:
    if is_local(dest):
        check_output(
            local_path(dest), inputs=[local_path(f) for f in files if is_local(f)], protected=protected_folders(cfg), folder=True
        )
    check_destination(dest)
    if cfg.events is not None:
        raise LeadDataError(
            "the dask engine does not compute behavioural features from events "
            "(the configuration has an events section); use the local engine"
        )


def run_on_cluster(
    client: Any,
    payload: ModelPayload,
    files: list[str],
    dest: str,
    *,
    reasons: bool = True,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    scored_at: str | None = None,
    inputs: bool = True,
) -> list[dict[str, Any]]:
    """Score ``files`` on the cluster of ``client`` with the models of ``payload`` and commit
    the parts to ``dest`` (nothing is read from the client's files once ``payload`` exists);
    each result names its committed ``part`` (path or URL); with ``inputs``, it carries its
    leads' inputs as read."""
    suffix = ".parquet" if is_parquet(files[0]) else ".csv"
    names = [f"part-{i:05d}{suffix}" for i in range(len(files))]
    tmp = temporary_prefix(dest)
    scored_at = scored_at or utc_now()
    try:
        shipped = client.scatter(payload, broadcast=True)
        futures = client.map(
            _score_partition,
            files,
            [f"{tmp}/{n}" for n in names],
            payload=shipped,
            reasons=reasons,
            chunk_rows=chunk_rows,
            scored_at=scored_at,
            inputs=inputs,
            pure=False,
        )
        results = client.gather(futures)
        _check_ids_across_files(results)
        commit(tmp, dest, names)
    finally:
        discard(tmp)
    return [{**r, "part": f"{dest.rstrip('/')}/{name}"} for r, name in zip(results, names, strict=True)]


def _append_history(cfg: ProjectConfig, payload: ModelPayload, results: list[dict[str, Any]], scored_at: str) -> None:
    ids = np.concatenate([r["ids"] for r in results])
    scores = np.concatenate([r["scores"] for r in results])
    inputs = pa.chunked_array([c for r in results for c in r["inputs"].chunks], type=pa.string())
    version = str(payload.manifest["sha256"])[:12]
    groups = pd.DataFrame({GROUP_FIELD: experiment_groups(ids, cfg.experiment)}) if cfg.experiment.enabled else None
    n = append_scores(cfg.path("score_history"), ids, scores, version, scored_at, inputs=inputs, extra=groups)
    log.info("score history: %d rows appended to %s", n, cfg.path("score_history"))


def score_dask(
    cfg: ProjectConfig,
    input_glob: str,
    output_dir: str | os.PathLike[str],
    *,
    models_dir: str | os.PathLike[str] | None = None,
    scheduler: str | None = None,
    workers: int = 2,
    reasons: bool = True,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    history: bool = True,
) -> dict[str, Any]:
    """Score the CSV/parquet files matching ``input_glob`` (path, URL or glob) with dask, one
    task per file; writes ``output_dir/part-NNNNN.csv`` (``.parquet`` parts for parquet
    input) in file-name order, then ``_SUCCESS``; the result lists them (``parts``). ``scheduler``: address of an existing
    cluster; default a local cluster with ``workers`` single-threaded workers. With
    ``history``, the scores are appended to the score history once committed."""
    from dask.distributed import Client, LocalCluster

    files, dest = expand(input_glob), str(output_dir)
    _check_paths(cfg, files, dest)
    payload = ModelPayload.from_client(cfg, models_dir)  # fails here, on the client, for a bad model
    cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    try:
        with Client(scheduler or cluster) as client:
            scored_at = utc_now()
            results = run_on_cluster(
                client, payload, files, dest, reasons=reasons, chunk_rows=chunk_rows, scored_at=scored_at, inputs=history
            )
    finally:
        if cluster is not None:
            cluster.close()
    if history:
        _append_history(cfg, payload, results, scored_at)
    buckets: dict[str, int] = {}
    for res in results:
        for k, v in res["buckets"].items():
            buckets[k] = buckets.get(k, 0) + v
    return {
        "output": dest,
        "partitions": len(files),
        "parts": [r["part"] for r in results],
        "leads": sum(r["leads"] for r in results),
        "buckets": buckets,
    }
