"""Behavioural features computed by DuckDB (embedded, no server) from the event files in
place: GA4 export files (newline-delimited JSON or parquet, ``events_YYYYMMDD``) or a flat
activity log (CSV or parquet), or the store written by ``leadscoring events ingest``.

Every feature is point in time: a lead's features count only events strictly before its
cut-off — for training, its creation time (``events.cutoff_column``, default
``data.date_column``) minus ``events.horizon_days``; for scoring, the scoring time (or that
column, ``events.score_at: cutoff_column``).
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscoring.config import EventsConfig, ProjectConfig
from leadscoring.errors import LeadDataError
from leadscoring.events.sql import GA4_JSON_COLUMNS, Query, events_sql, features_sql
from leadscoring.ingest.values import parse_dates

log = logging.getLogger(__name__)

JSON_SUFFIXES = (".json", ".ndjson", ".jsonl", ".json.gz", ".ndjson.gz", ".jsonl.gz")


def event_files(pattern: str | Path) -> list[str]:
    """The files matching ``pattern`` (a file, a glob, or a folder: every event file in it —
    parquet, JSON lines or CSV, so a README beside them is not read)."""
    p = Path(pattern)
    files = (
        sorted(
            str(f)
            for f in p.iterdir()
            if f.is_file()
            and not f.name.startswith(".")
            and f.name.lower().endswith((".parquet", ".csv", ".csv.gz", *JSON_SUFFIXES))
        )
        if p.is_dir()
        else sorted(glob.glob(str(p)))
    )
    if not files:
        raise LeadDataError(f"events: no file matches {pattern} (events.path)")
    return files


def store_folder(cfg: ProjectConfig) -> Path:
    """The event store's folder (``events.store``; written by ``leadscoring events ingest``)."""
    assert cfg.events is not None
    return cfg.root_path(cfg.events.store)


def store_files(cfg: ProjectConfig) -> list[str]:
    """The store's daily files (``events_YYYYMMDD.parquet``; none when there is no store yet).
    Files being written are hidden (dot) names, renamed into place when complete."""
    folder = store_folder(cfg)
    return sorted(str(f) for f in folder.glob("events_*.parquet") if f.is_file()) if folder.is_dir() else []


def scoring_files(cfg: ProjectConfig) -> list[str]:
    """The event files scoring reads: the store's when it has any, else ``events.path``'s
    (training reads ``events.path``)."""
    assert cfg.events is not None
    return store_files(cfg) or event_files(cfg.root_path(cfg.events.path))


def source_relation(ev: EventsConfig, files: Sequence[str]) -> Query:
    """A DuckDB table function reading ``files`` in place (one format for all of them); the
    file list (and the GA4 JSON schema) are its parameters ``$files`` (and ``$columns``)."""
    kinds = {"parquet" if f.endswith(".parquet") else "json" if f.endswith(JSON_SUFFIXES) else "csv" for f in files}
    if len(kinds) > 1:
        raise LeadDataError(f"events: mixed file formats {sorted(kinds)} in {files[0]}…; use one format per source")
    kind = kinds.pop()
    params: dict[str, Any] = {"files": list(files)}
    if kind == "parquet":
        return Query("read_parquet($files, union_by_name = true)", params)
    if kind == "json":
        if ev.format != "ga4":
            return Query("read_json($files, format = 'newline_delimited')", params)
        return Query("read_json($files, format = 'newline_delimited', columns = $columns)", {**params, "columns": GA4_JSON_COLUMNS})
    return Query("read_csv($files, header = true, all_varchar = true)", params)


def cutoffs(cfg: ProjectConfig, leads: pd.DataFrame, at: datetime | str | None = None) -> np.ndarray:
    """Each lead's cut-off (naive UTC timestamps): ``at`` when given (scoring), else the
    cut-off column minus the training horizon."""
    ev = cfg.events
    assert ev is not None
    if at is not None:
        t = pd.Timestamp(at)
        t = t.tz_convert(UTC).tz_localize(None) if t.tzinfo else t
        return np.full(len(leads), t.to_datetime64())
    column = ev.cutoff_column or cfg.data.date_column
    if ev.cutoff_at and not (column and column in leads.columns):
        fixed = pd.Timestamp(ev.cutoff_at)
        fixed = fixed.tz_convert(UTC).tz_localize(None) if fixed.tzinfo else fixed
        return np.full(len(leads), (fixed - timedelta(days=ev.horizon_days)).to_datetime64())
    if not column or column not in leads.columns:
        raise LeadDataError(
            f"events: each lead needs a cut-off; the leads have no column '{column}' "
            "(events.cutoff_column or data.date_column; or one date for all: events.cutoff_at)"
        )
    written = cfg.data.date_format if column == cfg.data.date_column else None  # another column: pandas' reading
    values = pd.to_datetime(parse_dates(leads[column], written), utc=True).dt.tz_localize(None)
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise LeadDataError(f"events: lead at row {row} has no usable cut-off in '{column}' ({leads[column].iloc[row]!r})")
    return (values - timedelta(days=ev.horizon_days)).to_numpy()


def compute_features(
    cfg: ProjectConfig,
    leads: pd.DataFrame,
    *,
    at: datetime | str | None = None,
    files: Sequence[str] | None = None,
    con: Any = None,
) -> pd.DataFrame:
    """The configured behavioural features of ``leads`` (one row each, same index), from the
    event files (default ``events.path``) or an open DuckDB connection's ``events`` view or table."""
    import duckdb

    ev = cfg.events
    if ev is None:
        raise LeadDataError("events: no events section in the configuration")
    key = ev.lead_key
    if key not in leads.columns:
        raise LeadDataError(f"events: the leads have no column '{key}' (events.lead_key) to find their events")
    table = pd.DataFrame(
        {"lead_row": np.arange(len(leads)), "visitor": leads[key].astype("string").to_numpy(), "cutoff": cutoffs(cfg, leads, at)}
    )
    own = con is None
    con = con or duckdb.connect()
    try:
        con.register("leads_in", table)
        events: Query | str = "events"
        if files is not None or own:
            flat = events_sql(ev, source_relation(ev, files or event_files(cfg.root_path(ev.path))), portable=False)
            events = Query(f"({flat.sql})", flat.params)
        query = features_sql(ev, events, leads="leads_in")
        out = con.execute(query.sql, query.params).df()
    except duckdb.Error as exc:
        raise LeadDataError(f"events: {str(exc).splitlines()[0]}") from None
    finally:
        con.unregister("leads_in")
        if own:
            con.close()
    out = out.drop(columns="lead_row").astype(float)
    out.index = leads.index
    return out


def add_event_features(cfg: ProjectConfig, leads: pd.DataFrame, *, at: datetime | str | None = None, **kwargs: Any) -> pd.DataFrame:
    """``leads`` with the behavioural feature columns computed (replacing any of that name)."""
    if cfg.events is None:
        return leads
    feats = compute_features(cfg, leads, at=at, **kwargs)
    log.info("behavioural features for %d leads from the events", len(leads))
    return join_features(leads, feats)


def join_features(leads: pd.DataFrame, feats: pd.DataFrame) -> pd.DataFrame:
    """``leads`` with the feature columns ``feats`` (same index), replacing any of that name."""
    return pd.concat([leads.drop(columns=[c for c in feats.columns if c in leads.columns]), feats], axis=1)
