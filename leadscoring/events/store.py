"""The event store: daily export files gathered in one parquet folder (``events.store``),
one file per day named like the GA4 daily export (``events_YYYYMMDD.parquet``).

A day's file holds the source's own rows: GA4 rows stay nested (the export columns the
features read, :data:`~leadscoring.events.sql.GA4_JSON_COLUMNS`, with one schema for every
day), a flat activity log keeps its columns; so the same SQL templates read the store as
the export files. :func:`ingest` is idempotent: ingesting a day again replaces that day's
file (written beside it, then renamed over it), so readers see the old file or the new
one, never half of one, and a day is never counted twice. Scoring reads the store when it
has files (:func:`leadscoring.events.engine.scoring_files`).
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from leadscoring.config import EventsConfig, ProjectConfig
from leadscoring.errors import LeadDataError
from leadscoring.events.engine import JSON_SUFFIXES, source_relation, store_folder
from leadscoring.events.sql import GA4_JSON_COLUMNS
from leadscoring.io import atomic_path

log = logging.getLogger(__name__)

#: The day of a GA4 daily (or intraday) export file: ``events_20260101.json.gz``,
#: ``events_intraday_20260101.parquet``, ``events_20260101-000000000001.json`` (a shard).
GA4_DAY = re.compile(r"^events_(?:intraday_)?(\d{4})(\d{2})(\d{2})(?![0-9])")
SUFFIXES = (".parquet", ".csv", *JSON_SUFFIXES)


def store_name(day: str) -> str:
    """The store's file of ``day`` (ISO date ``2026-01-01``): ``events_20260101.parquet``."""
    return f"events_{day.replace('-', '')}.parquet"


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _checked_files(files: Sequence[str | Path]) -> list[str]:
    if not files:
        raise LeadDataError("events ingest: no file given")
    out = []
    for f in map(Path, files):
        if not f.is_file():
            raise LeadDataError(f"events ingest: {f}: no such file")
        if not f.name.lower().endswith(SUFFIXES):
            raise LeadDataError(f"events ingest: {f.name}: not a parquet, CSV or newline-delimited JSON file")
        out.append(str(f.resolve()))
    return list(dict.fromkeys(out))


def _ga4_days(files: Sequence[str]) -> dict[str, list[str]]:
    """GA4 files grouped by the day in their names (one day may come in several shards)."""
    days: dict[str, list[str]] = {}
    for f in files:
        m = GA4_DAY.match(Path(f).name)
        if m is None:
            raise LeadDataError(
                f"events ingest: {Path(f).name}: a GA4 daily export is named events_YYYYMMDD "
                "(.json, .json.gz or .parquet); the day comes from the name"
            )
        days.setdefault("-".join(m.groups()), []).append(f)
    return days


def _ga4_select(con: Any, ev: EventsConfig, relation: str) -> str:
    """The store's GA4 columns from ``relation``: nested as exported, one type each (so every
    day's file has the same schema); a column the files lack is empty."""
    present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}
    if ev.key not in present:
        raise LeadDataError(f"events ingest: the files have no column '{ev.key}' (events.key)")
    columns = {**GA4_JSON_COLUMNS, ev.key: GA4_JSON_COLUMNS.get(ev.key, "VARCHAR")}
    parts = [f'CAST(e."{c}" AS {t}) AS "{c}"' if c in present else f'CAST(NULL AS {t}) AS "{c}"' for c, t in columns.items()]
    return f'SELECT {", ".join(parts)} FROM {relation} AS e ORDER BY e."{ev.key}", e.event_timestamp'


def _write_day(con: Any, select: str, dest: Path) -> int:
    """Write one day's rows to ``dest`` atomically; the number of rows."""
    with atomic_path(dest) as tmp:
        row = con.execute(f"COPY ({select}) TO {_sql_text(str(tmp))} (FORMAT parquet, COMPRESSION zstd)").fetchone()
    return int(row[0]) if row else 0


def _ingest_ga4(con: Any, ev: EventsConfig, files: Sequence[str], folder: Path) -> dict[str, int]:
    written = {}
    for day, day_files in sorted(_ga4_days(files).items()):
        select = _ga4_select(con, ev, source_relation(ev, day_files))
        written[day] = _write_day(con, select, folder / store_name(day))
    return written


def _ingest_flat(con: Any, ev: EventsConfig, files: Sequence[str], folder: Path) -> dict[str, int]:
    """A flat log's rows split by the day of ``events.time_column`` (rows without a time are
    left out: no feature counts them)."""
    relation = source_relation(ev, files)
    present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}
    for col in (ev.key, ev.time_column):
        if col not in present:
            raise LeadDataError(f"events ingest: the files have no column '{col}'")
    time = f'e."{ev.time_column}"'
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE incoming AS SELECT e.*, CAST(TRY_CAST({time} AS TIMESTAMP) AS DATE) "
        f"AS __day FROM {relation} AS e"
    )
    bad = con.execute(
        f'SELECT "{ev.time_column}" FROM incoming WHERE __day IS NULL AND "{ev.time_column}" IS NOT NULL LIMIT 1'
    ).fetchone()
    if bad is not None:
        raise LeadDataError(f"events ingest: '{bad[0]}' in '{ev.time_column}' (events.time_column) is not a date-time")
    missing = con.execute("SELECT count(*) FROM incoming WHERE __day IS NULL").fetchone()[0]
    if missing:
        log.warning("events ingest: %d rows without a time in '%s' left out", missing, ev.time_column)
    written = {}
    for (day,) in con.execute("SELECT DISTINCT __day FROM incoming WHERE __day IS NOT NULL ORDER BY 1").fetchall():
        select = f'SELECT * EXCLUDE (__day) FROM incoming WHERE __day = DATE \'{day}\' ORDER BY "{ev.key}", "{ev.time_column}"'
        written[str(day)] = _write_day(con, select, folder / store_name(str(day)))
    return written


def ingest(cfg: ProjectConfig, files: Sequence[str | Path]) -> dict[str, int]:
    """Add daily export files to the event store; the rows written per day (ISO date).

    GA4 (``events.format: ga4``): ``events_YYYYMMDD.json[.gz]`` or ``.parquet`` files, the
    day taken from the name (shards of one day are gathered in one file). A flat log (CSV
    or parquet): its rows split by the day of ``events.time_column``. Each day's file is
    replaced whole: ingest a day's complete export again to correct it."""
    import duckdb

    ev = cfg.events
    if ev is None:
        raise LeadDataError("events ingest: the configuration has no events section")
    paths = _checked_files(files)
    folder = store_folder(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        written = (_ingest_ga4 if ev.format == "ga4" else _ingest_flat)(con, ev, paths, folder)
    except duckdb.Error as exc:
        raise LeadDataError(f"events ingest: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
    log.info("events ingest: %d rows in %d day(s) -> %s", sum(written.values()), len(written), folder)
    return written


def ingest_report(cfg: ProjectConfig, files: Sequence[str | Path]) -> str:
    """:func:`ingest`, told in lines: rows written per day, then the total (what
    ``leadscoring events ingest`` prints)."""
    written = ingest(cfg, files)
    lines = [f"{day}: {rows} rows -> {store_name(day)}" for day, rows in written.items()]
    return "\n".join([*lines, f"{sum(written.values())} rows in {len(written)} day(s) -> {store_folder(cfg)}"])


def add_events_parser(sub: Any, handler: Callable[[argparse.Namespace], int]) -> None:
    """The command line's ``events`` subcommand: ``events ingest FILE...``, run by ``handler``."""
    events = sub.add_parser("events", help="behavioural events: add daily export files to the event store")
    ing = events.add_subparsers(dest="action", required=True).add_parser(
        "ingest",
        help="add daily export files to the event store (events.store); a day ingested again replaces "
        "that day's file, never duplicates it",
    )
    ing.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="GA4 events_YYYYMMDD.json[.gz] or .parquet files, or a flat activity log (CSV or parquet)",
    )
    ing.set_defaults(func=handler)
