"""Live behavioural features for the scoring service: a lead's features as of now, from the
event store, in milliseconds.

:class:`LiveEvents` loads the store's events once into an in-memory DuckDB table, already
normalised (the flat event relation of :func:`~leadscoring.events.sql.events_sql`, only the
columns the configured features read), sorted by visitor and indexed on it (an ART index;
the sort also makes the column's min-max zone maps selective). A lookup first copies the
rows of the call's few visitors into a small temporary table (an index lookup, not a scan
of the events), then runs the feature template of batch scoring
(:func:`~leadscoring.events.sql.features_sql`, distinct counts as list
aggregates) on that table: the numbers of
:func:`~leadscoring.events.engine.compute_features`, in a few milliseconds.

The table is reloaded when the store changes (a day ingested or replaced: the folder's
file names, modification times and sizes, checked at most once per ``check_seconds``); in
the service the reload runs in a background thread and lookups use the previous table
until the new one is ready. One lock guards the connection (the service scores batches in
a thread pool).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from leadscoring.config import EventsConfig, ProjectConfig
from leadscoring.errors import LeadDataError
from leadscoring.events.engine import cutoffs, event_files, join_features, source_relation, store_files
from leadscoring.events.sql import events_sql, features_sql, params_of, quote_identifier

log = logging.getLogger(__name__)

Listing = tuple[tuple[str, int, int], ...]


def live_columns(ev: EventsConfig) -> dict[str, str]:
    """The flat event relation's columns the configured features read, with their types."""
    kinds = {f.kind for f in ev.features}
    cols = {"visitor": "VARCHAR", "ts": "TIMESTAMP", "event_name": "VARCHAR"}
    optional = {
        "session_id": ("VARCHAR", "sessions" in kinds),
        "engagement_ms": ("DOUBLE", "engagement_seconds" in kinds),
        "source": ("VARCHAR", "share" in kinds),
        "page": ("VARCHAR", any(f.page_contains for f in ev.features)),
    }
    cols.update({c: t for c, (t, used) in optional.items() if used})
    cols.update({f"value_{p}": "DOUBLE" for p in params_of(ev.features)})
    return cols


def listing(files: list[str]) -> Listing:
    """Name, modification time (ns) and size of each file: changes when a day is added or replaced."""
    out = []
    for f in files:
        try:
            st = os.stat(f)
        except FileNotFoundError:  # replaced or removed meanwhile: the next check sees the new state
            continue
        out.append((f, st.st_mtime_ns, st.st_size))
    return tuple(out)


class LiveEvents:
    """The store's events in memory, indexed by visitor, for per-lead lookups as of a time."""

    def __init__(self, cfg: ProjectConfig, *, check_seconds: float = 1.0, background: bool = True) -> None:
        import duckdb

        if cfg.events is None:
            raise LeadDataError("events: no events section in the configuration")
        self.cfg, self.ev = cfg, cfg.events
        self.check_seconds = check_seconds
        #: Reload in a background thread (the service) or within the lookup that sees the change.
        self.background = background
        self.columns = live_columns(self.ev)
        self.rows = 0
        self.loaded_at: str | None = None  # UTC, ISO 8601
        self._con = duckdb.connect()
        self._lock = threading.Lock()  # the connection and the current table
        self._reload_lock = threading.Lock()  # one reload at a time
        self._loader: threading.Thread | None = None
        self._table: str | None = None
        self._generation = 0
        self._listing: Listing = ()
        self._checked = 0.0
        # The per-lookup tables: the call's leads and their visitors' events, and the feature
        # query over them (its values as parameters).
        schema = ", ".join(f"{quote_identifier(c)} {t}" for c, t in self.columns.items())
        self._con.execute(f"CREATE TEMP TABLE picked ({schema})")
        self._con.execute("CREATE TEMP TABLE live_leads (lead_row BIGINT, visitor VARCHAR, cutoff TIMESTAMP)")
        self._features = features_sql(self.ev, "picked", "live_leads", portable=False)
        self.refresh()
        # A lookup's query is tiny: one thread answers it sooner than a team would (and
        # background reloads then leave the other cores to scoring).
        self._con.execute("SET threads = 1")

    # -- loading ----------------------------------------------------------------------------
    def sources(self) -> list[str]:
        """The files loaded: the store's, else those of ``events.path``, else none yet."""
        files = store_files(self.cfg)
        if files:
            return files
        try:
            return event_files(self.cfg.root_path(self.ev.path))
        except LeadDataError:
            return []

    def refresh(self) -> bool:
        """Reload now if the files changed since the last load; True when reloaded."""
        with self._reload_lock:
            files = self.sources()
            now = listing(files)  # taken before reading: a change while loading is seen next time
            self._checked = time.monotonic()
            if self._table is not None and now == self._listing:
                return False
            self._load(files, now)
            return True

    def _load(self, files: list[str], now: Listing) -> None:
        import duckdb

        with self._lock:
            cur = self._con.cursor()  # its own handle: lookups go on with the current table meanwhile
        name = f"live_events_{self._generation + 1}"
        schema = ", ".join(f"{quote_identifier(c)} {t}" for c, t in self.columns.items())
        names = ", ".join(quote_identifier(c) for c in self.columns)
        t0 = time.perf_counter()
        try:
            cur.execute(f"CREATE OR REPLACE TABLE {name} ({schema})")
            if files:
                flat = events_sql(self.ev, source_relation(self.ev, files), portable=False)
                cur.execute(f"INSERT INTO {name} SELECT {names} FROM ({flat.sql}) ORDER BY visitor, ts", flat.params)
            cur.execute(f"CREATE INDEX {name}_visitor ON {name} (visitor)")
            rows = int(cur.execute(f"SELECT count(*) FROM {name}").fetchone()[0])
        except duckdb.Error as exc:
            cur.execute(f"DROP TABLE IF EXISTS {name}")
            raise LeadDataError(f"events: {str(exc).splitlines()[0]}") from None
        finally:
            cur.close()
        with self._lock:
            old, self._table, self._generation = self._table, name, self._generation + 1
            self._listing, self.rows = now, rows
            self.loaded_at = datetime.now(UTC).isoformat(timespec="seconds")
            if old is not None:
                self._con.execute(f"DROP TABLE {old}")
        log.info("live events: %d events from %d file(s) loaded in %.1fs", rows, len(files), time.perf_counter() - t0)

    def _reload_quietly(self) -> None:
        try:
            self.refresh()
        except LeadDataError as exc:  # keep serving the previous events; retried on the next change
            with self._lock:
                self._listing = listing(self.sources())
            log.error("live events: reload failed, keeping the previous events: %s", exc)

    def _maybe_refresh(self) -> None:
        """At most once per ``check_seconds``: reload if the files changed."""
        if time.monotonic() - self._checked < self.check_seconds:
            return
        self._checked = time.monotonic()
        if listing(self.sources()) == self._listing:
            return
        if not self.background:
            self.refresh()
        elif self._loader is None or not self._loader.is_alive():
            self._loader = threading.Thread(target=self._reload_quietly, name="live-events-reload", daemon=True)
            self._loader.start()

    # -- lookups ----------------------------------------------------------------------------
    def features(self, leads: pd.DataFrame, at: datetime | str | None = None) -> pd.DataFrame:
        """The configured features of ``leads`` (one row each, same index) as of ``at`` (or
        each lead's cut-off column when None), from their visitors' events only: the numbers
        of :func:`~leadscoring.events.engine.compute_features`."""
        import duckdb

        self._maybe_refresh()
        key = self.ev.lead_key
        if key not in leads.columns:
            raise LeadDataError(f"events: the leads have no column '{key}' (events.lead_key) to find their events")
        visitors = leads[key].astype("string").to_numpy(dtype=object, na_value=None).tolist()
        cut = np.datetime_as_string(cutoffs(self.cfg, leads, at).astype("datetime64[us]"), unit="us").tolist()
        wanted = list(dict.fromkeys(v for v in visitors if v is not None))
        # The visitors as one parameter each (an IN list of constants: the index finds their
        # rows); one transaction, rolled back: the lookup tables are empty again for the next call.
        where = ", ".join(f"$w{i}" for i in range(len(wanted))) or "NULL"
        with self._lock:
            try:
                self._con.execute("BEGIN")
                self._con.execute(
                    f"INSERT INTO picked SELECT * FROM {self._table} WHERE visitor IN ({where})",
                    {f"w{i}": v for i, v in enumerate(wanted)},
                )
                if visitors:
                    self._con.execute(
                        "INSERT INTO live_leads SELECT unnest(range(len($visitors))), unnest($visitors), "
                        "CAST(unnest($cutoffs) AS TIMESTAMP)",
                        {"visitors": visitors, "cutoffs": cut},
                    )
                got = self._con.execute(self._features.sql, self._features.params).fetchall()
            except duckdb.Error as exc:
                raise LeadDataError(f"events: {str(exc).splitlines()[0]}") from None
            finally:
                with contextlib.suppress(duckdb.Error):  # (none open when the SQL did not parse)
                    self._con.execute("ROLLBACK")
        names = [f.name for f in self.ev.features]
        values = np.array(got, dtype=float).reshape(len(got), len(names) + 1)[:, 1:]  # (rows by lead_row; NULL: NaN)
        return pd.DataFrame(values, index=leads.index, columns=names)

    def add_features(self, leads: pd.DataFrame, at: datetime | str | None = None) -> pd.DataFrame:
        """``leads`` with the behavioural feature columns computed (replacing any of that name)."""
        return join_features(leads, self.features(leads, at))

    def stats(self) -> dict[str, Any]:
        """Events loaded, files and load time (logs, monitoring)."""
        return {"events": self.rows, "files": len(self._listing), "loaded_at": self.loaded_at}

    def close(self) -> None:
        with self._lock:
            self._con.close()
