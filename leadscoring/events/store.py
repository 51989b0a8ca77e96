"""The event store: daily export files gathered in one parquet folder (``events.store``),
one file per day named like the GA4 daily export (``events_YYYYMMDD.parquet``).

A day's file holds the source's own rows: GA4 rows stay nested (the export columns the
features read, :data:`~leadscoring.events.sql.GA4_JSON_COLUMNS`, with one schema for every
day), a flat activity log keeps its columns; so the same SQL templates read the store as
the export files. :func:`ingest` is idempotent: ingesting a day again replaces that day's
file (written beside it, then renamed over it), so readers see the old file or the new
one, never half of one, and a day is never counted twice.

Every input file is checked before anything is written, so a refused file leaves the store
as it was: an empty file (0 bytes, or no rows) is refused, and a day's file is never
replaced by nothing; a GA4 file must be named for a real day (``events_20251399`` is
refused) and hold that day's events only — ``event_date`` (``YYYYMMDD``), else the UTC date
of ``event_timestamp`` — so a copy of another day is never counted twice. Events without a
visitor key (``events.key`` empty) are left out of the store, counted and reported (no
feature could count them). Scoring reads the store when it has files
(:func:`leadscoring.events.engine.scoring_files`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from leadscoring.config import EventsConfig, ProjectConfig
from leadscoring.errors import LeadDataError
from leadscoring.events.engine import JSON_SUFFIXES, event_files, source_relation, store_files, store_folder
from leadscoring.events.sql import GA4_JSON_COLUMNS, Query, quote_identifier
from leadscoring.io import atomic_path

log = logging.getLogger(__name__)

#: The day of a GA4 daily (or intraday) export file: ``events_20260101.json.gz``,
#: ``events_intraday_20260101.parquet``, ``events_20260101-000000000001.json`` (a shard).
GA4_DAY = re.compile(r"^events_(?:intraday_)?(\d{4})(\d{2})(\d{2})(?![0-9])")
SUFFIXES = (".parquet", ".csv", *JSON_SUFFIXES)
#: At most this many of a file's other days are named in a message.
SHOWN_DAYS = 5


@dataclass(frozen=True)
class Ingested:
    """What :func:`ingest_files` did: the rows written per day (ISO date), and the events
    left out because they have no visitor key (``events.key`` empty: no feature could
    count them)."""

    days: dict[str, int] = field(default_factory=dict)
    without_key: int = 0


def store_name(day: str) -> str:
    """The store's file of ``day`` (ISO date ``2026-01-01``): ``events_20260101.parquet``."""
    return f"events_{day.replace('-', '')}.parquet"


def _iso(day: str) -> str:
    """``20260101`` as ``2026-01-01`` (any other text as it is)."""
    return f"{day[:4]}-{day[4:6]}-{day[6:]}" if len(day) == 8 and day.isdigit() else day


def _no_key(column: str) -> str:
    """SQL: the visitor key ``column`` of ``e`` is missing (NULL or blank)."""
    col = f"e.{quote_identifier(column)}"
    return f"({col} IS NULL OR trim(CAST({col} AS VARCHAR)) = '')"


def _checked_files(files: Sequence[str | Path]) -> list[str]:
    if not files:
        raise LeadDataError("events ingest: no file given")
    out = []
    for f in map(Path, files):
        if not f.is_file():
            raise LeadDataError(f"events ingest: {f}: no such file")
        if not f.name.lower().endswith(SUFFIXES):
            raise LeadDataError(f"events ingest: {f.name}: not a parquet, CSV or newline-delimited JSON file")
        if f.stat().st_size == 0:
            raise LeadDataError(f"events ingest: {f}: the file is empty (0 bytes); nothing ingested, the store is unchanged")
        out.append(str(f.resolve()))
    return list(dict.fromkeys(out))


def _ga4_days(files: Sequence[str]) -> dict[str, list[str]]:
    """GA4 files grouped by the day in their names (one day may come in several shards);
    a name whose day does not exist (``events_20251399``) is refused."""
    days: dict[str, list[str]] = {}
    for f in files:
        m = GA4_DAY.match(Path(f).name)
        if m is None:
            raise LeadDataError(
                f"events ingest: {Path(f).name}: a GA4 daily export is named events_YYYYMMDD "
                "(.json, .json.gz or .parquet); the day comes from the name"
            )
        day = "-".join(m.groups())
        try:
            date.fromisoformat(day)
        except ValueError:
            raise LeadDataError(
                f"events ingest: {Path(f).name}: {day} in the name is not a date (events_YYYYMMDD); nothing ingested"
            ) from None
        days.setdefault(day, []).append(f)
    return days


def _columns(con: Any, relation: Query) -> set[str]:
    return {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation.sql}", relation.params).fetchall()}


def _event_day(present: set[str]) -> str | None:
    """SQL: an event's day as ``YYYYMMDD`` — its ``event_date``, else the UTC date of its
    ``event_timestamp`` (microseconds); None when the files have neither column."""
    parts = []
    if "event_date" in present:
        parts.append("replace(CAST(e.event_date AS VARCHAR), '-', '')")
    if "event_timestamp" in present:
        parts.append("strftime(make_timestamp(CAST(e.event_timestamp AS BIGINT)), '%Y%m%d')")
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else f"COALESCE({', '.join(parts)})"


def _check_ga4_file(con: Any, ev: EventsConfig, path: str, day: str) -> tuple[int, int]:
    """(events, events without a visitor key) of one GA4 file named for ``day``; refuses a
    file without events or the key column, or holding events of another day."""
    import duckdb

    name = Path(path).name
    relation = source_relation(ev, [path])
    try:
        present = _columns(con, relation)
        if ev.key not in present:
            raise LeadDataError(f"events ingest: {name}: the file has no column '{ev.key}' (events.key)")
        event_day = _event_day(present)
        other = f"{event_day} <> $day" if event_day else "false"
        rows, keyless, n_other, other_days = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {_no_key(ev.key)}), count(*) FILTER (WHERE {other}), "
            f"list(DISTINCT {event_day or 'NULL'}) FILTER (WHERE {other}) FROM {relation.sql} AS e",
            {**relation.params, **({"day": day.replace("-", "")} if event_day else {})},
        ).fetchone()
    except duckdb.Error as exc:
        raise LeadDataError(f"events ingest: {name}: {str(exc).splitlines()[0]}") from None
    if rows == 0:
        raise LeadDataError(f"events ingest: {name}: no events in the file; nothing ingested, the store is unchanged")
    if n_other:
        days = sorted(map(_iso, other_days or []))
        shown = ", ".join(days[:SHOWN_DAYS]) + (f" and {len(days) - SHOWN_DAYS} more" if len(days) > SHOWN_DAYS else "")
        raise LeadDataError(
            f"events ingest: {name}: the name says {day} but {n_other} of its {rows} events are of {shown} "
            "(event_date, else the UTC date of event_timestamp); nothing ingested"
        )
    return int(rows), int(keyless)


def _ga4_select(con: Any, ev: EventsConfig, relation: Query) -> Query:
    """The store's GA4 columns from ``relation``: nested as exported, one type each (so every
    day's file has the same schema); a column the files lack is empty. Events without a
    visitor key are left out."""
    present = _columns(con, relation)
    if ev.key not in present:
        raise LeadDataError(f"events ingest: the files have no column '{ev.key}' (events.key)")
    columns = {**GA4_JSON_COLUMNS, ev.key: GA4_JSON_COLUMNS.get(ev.key, "VARCHAR")}
    q = quote_identifier
    parts = [f"CAST(e.{q(c)} AS {t}) AS {q(c)}" if c in present else f"CAST(NULL AS {t}) AS {q(c)}" for c, t in columns.items()]
    return Query(
        f"SELECT {', '.join(parts)} FROM {relation.sql} AS e WHERE NOT {_no_key(ev.key)} ORDER BY e.{q(ev.key)}, e.event_timestamp",
        relation.params,
    )


def _write_day(con: Any, select: Query, dest: Path, sources: str) -> int:
    """Write one day's rows to ``dest`` atomically; the number of rows. No rows: refused,
    ``dest`` left as it was (a day is never replaced by nothing)."""
    with atomic_path(dest) as tmp:
        row = con.execute(
            f"COPY ({select.sql}) TO $dest (FORMAT parquet, COMPRESSION zstd)", {**select.params, "dest": str(tmp)}
        ).fetchone()
        rows = int(row[0]) if row else 0
        if rows == 0:
            raise LeadDataError(f"events ingest: {sources}: no events to store in {dest.name}; the store's file is left as it was")
    return rows


def _names(files: Sequence[str]) -> str:
    return ", ".join(Path(f).name for f in files)


def _ingest_ga4(con: Any, ev: EventsConfig, files: Sequence[str], folder: Path) -> Ingested:
    """Every file checked (see :func:`_check_ga4_file`), then each day written."""
    selects: dict[str, tuple[Query, list[str]]] = {}
    without_key = 0
    for day, day_files in sorted(_ga4_days(files).items()):
        counts = [_check_ga4_file(con, ev, f, day) for f in day_files]
        without_key += sum(k for _, k in counts)
        if all(rows == k for rows, k in counts):
            raise LeadDataError(
                f"events ingest: {_names(day_files)}: none of the {sum(r for r, _ in counts)} events of {day} has a visitor key "
                f"('{ev.key}', events.key); nothing ingested, the store is unchanged"
            )
        selects[day] = (_ga4_select(con, ev, source_relation(ev, day_files)), day_files)
    written = {day: _write_day(con, select, folder / store_name(day), _names(fs)) for day, (select, fs) in selects.items()}
    return Ingested(written, without_key)


def _check_flat_file(con: Any, ev: EventsConfig, path: str) -> tuple[int, int]:
    """(rows, rows without a visitor key) of one activity log file; refuses a file without
    rows or without the key or time column."""
    import duckdb

    name = Path(path).name
    relation = source_relation(ev, [path])
    try:
        present = _columns(con, relation)
        for col in (ev.key, ev.time_column):
            if col not in present:
                raise LeadDataError(f"events ingest: {name}: the file has no column '{col}'")
        rows, keyless = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {_no_key(ev.key)}) FROM {relation.sql} AS e", relation.params
        ).fetchone()
    except duckdb.Error as exc:
        raise LeadDataError(f"events ingest: {name}: {str(exc).splitlines()[0]}") from None
    if rows == 0:
        raise LeadDataError(f"events ingest: {name}: no rows in the file; nothing ingested, the store is unchanged")
    return int(rows), int(keyless)


def _ingest_flat(con: Any, ev: EventsConfig, files: Sequence[str], folder: Path) -> Ingested:
    """A flat log's rows split by the day of ``events.time_column`` (rows without a time or
    without a visitor key are left out: no feature counts them)."""
    without_key = sum(_check_flat_file(con, ev, f)[1] for f in files)
    relation = source_relation(ev, files)
    present = _columns(con, relation)
    for col in (ev.key, ev.time_column):
        if col not in present:
            raise LeadDataError(f"events ingest: the files have no column '{col}'")
    time, key = quote_identifier(ev.time_column), quote_identifier(ev.key)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE incoming AS SELECT e.*, CAST(TRY_CAST(e.{time} AS TIMESTAMP) AS DATE) "
        f"AS __day FROM {relation.sql} AS e WHERE NOT {_no_key(ev.key)}",
        relation.params,
    )
    bad = con.execute(f"SELECT {time} FROM incoming WHERE __day IS NULL AND {time} IS NOT NULL LIMIT 1").fetchone()
    if bad is not None:
        raise LeadDataError(f"events ingest: '{bad[0]}' in '{ev.time_column}' (events.time_column) is not a date-time")
    missing = con.execute("SELECT count(*) FROM incoming WHERE __day IS NULL").fetchone()[0]
    if missing:
        log.warning("events ingest: %d rows without a time in '%s' left out", missing, ev.time_column)
    days = [str(d) for (d,) in con.execute("SELECT DISTINCT __day FROM incoming WHERE __day IS NOT NULL ORDER BY 1").fetchall()]
    if not days:
        raise LeadDataError(
            f"events ingest: {_names(files)}: no row has both a visitor key ('{ev.key}') and a time ('{ev.time_column}'); "
            "nothing ingested, the store is unchanged"
        )
    written = {}
    for day in days:
        select = Query(
            f"SELECT * EXCLUDE (__day) FROM incoming WHERE __day = CAST($day AS DATE) ORDER BY {key}, {time}", {"day": day}
        )
        written[day] = _write_day(con, select, folder / store_name(day), _names(files))
    return Ingested(written, without_key)


def ingest_files(cfg: ProjectConfig, files: Sequence[str | Path]) -> Ingested:
    """Add daily export files to the event store: the rows written per day (ISO date) and
    the events left out for want of a visitor key.

    GA4 (``events.format: ga4``): ``events_YYYYMMDD.json[.gz]`` or ``.parquet`` files, the
    day taken from the name (shards of one day are gathered in one file); each file must
    hold that day's events only. A flat log (CSV or parquet): its rows split by the day of
    ``events.time_column``. Each day's file is replaced whole: ingest a day's complete
    export again to correct it. Every file is checked before anything is written: an empty
    file, an impossible day or a file of another day's events is a one-line
    :class:`LeadDataError` and the store is left as it was. Events without a visitor key
    (``events.key`` NULL or blank) are not stored — no feature could count them — and are
    counted in :attr:`Ingested.without_key` and logged as a WARNING."""
    import duckdb

    ev = cfg.events
    if ev is None:
        raise LeadDataError("events ingest: the configuration has no events section")
    paths = _checked_files(files)
    folder = store_folder(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        result = (_ingest_ga4 if ev.format == "ga4" else _ingest_flat)(con, ev, paths, folder)
    except duckdb.Error as exc:
        raise LeadDataError(f"events ingest: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
    if result.without_key:
        log.warning(
            "events ingest: %d event(s) without a visitor key ('%s', events.key) left out of the store",
            result.without_key,
            ev.key,
        )
    log.info("events ingest: %d rows in %d day(s) -> %s", sum(result.days.values()), len(result.days), folder)
    return result


def ingest(cfg: ProjectConfig, files: Sequence[str | Path]) -> dict[str, int]:
    """:func:`ingest_files`' rows written per day (ISO date)."""
    return ingest_files(cfg, files).days


def ingest_report(cfg: ProjectConfig, files: Sequence[str | Path]) -> str:
    """:func:`ingest_files`, told in lines: rows written per day, the events left out for
    want of a visitor key (when any), then the total (what ``leadscoring events ingest``
    prints)."""
    first = not store_files(cfg)
    result = ingest_files(cfg, files)
    written = result.days
    lines = [f"{day}: {rows} rows -> {store_name(day)}" for day, rows in written.items()]
    if result.without_key:
        key = cfg.events.key if cfg.events is not None else "events.key"
        lines.append(f"{result.without_key} events without a visitor key ('{key}', events.key) left out")
    lines.append(f"{sum(written.values())} rows in {len(written)} day(s) -> {store_folder(cfg)}")
    if first:
        lines += _history_left_out(cfg, files)
    return "\n".join(lines)


def _history_left_out(cfg: ProjectConfig, files: Sequence[str | Path]) -> list[str]:
    """A warning when the store's first ingest leaves out files of ``events.path``: scoring
    reads the store alone once it has files, so the behaviour in those files stops counting."""
    assert cfg.events is not None
    pattern = cfg.root_path(cfg.events.path)
    try:
        history = event_files(pattern)
    except LeadDataError:  # events.path matches nothing (the store is the only source)
        return []
    given = {Path(f).resolve() for f in files}
    left = [f for f in history if Path(f).resolve() not in given]
    if not left:
        return []
    return [
        f"WARNING: scoring reads the event store alone from now on, and {len(left)} file(s) of events.path "
        f"({cfg.events.path}) are not in it, e.g. {Path(left[0]).name}: their behaviour no longer counts in a score. "
        f"Ingest them too: leadscoring events ingest {pattern if not pattern.is_dir() else 'FILE...'}"
    ]
