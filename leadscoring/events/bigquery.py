"""The behavioural features run in BigQuery: the same templates as DuckDB (``events/sql``),
rendered in DuckDB's dialect and transpiled by sqlglot to BigQuery Standard SQL, reading the
GA4 export in place (wildcard table ``project.dataset.events_*``, days chosen by
``_TABLE_SUFFIX``) or a flat activity log table.

:func:`bigquery_sql` is the query (also ``python -m leadscoring.events.bigquery``, to paste in
the BigQuery console); :func:`run_bigquery` runs it through the official client
(``pip install "leadscoring[bigquery]"``), credentials from the environment only (Application
Default Credentials: ``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth application-default
login`` or the service account of the machine), never from the configuration.

The leads reach BigQuery as a short-lived table (lead_row, visitor, cutoff) in a scratch
dataset (default: the events' dataset), created with a one-day expiration and deleted after
the query: one scan of the events whatever the number of leads, where query parameters would
hit the 10 MB request limit near 100 000 leads and batches would scan the events once each.
"""

from __future__ import annotations

import argparse
import logging
import sys
import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from leadscoring.config import ConfigError, EventsConfig, ProjectConfig, load_config
from leadscoring.errors import LeadDataError
from leadscoring.events.engine import cutoffs
from leadscoring.events.sql import Query, events_sql, features_sql, quote_identifier

log = logging.getLogger(__name__)

INSTALL = 'pip install "leadscoring[bigquery]"'
#: Placeholder relation names in the DuckDB rendering, replaced by the real tables in the AST.
_SOURCE, _LEADS = "leadscoring_events_source", "leadscoring_leads_source"
LEADS_COLUMNS = "lead_row INT64, visitor STRING, cutoff TIMESTAMP"


def _sqlglot() -> tuple[Any, Any]:
    try:
        import sqlglot
        from sqlglot import exp
    except ImportError:
        raise LeadDataError(f"events on BigQuery need sqlglot: {INSTALL}") from None
    return sqlglot, exp


def _day(value: date | str, what: str) -> date:
    """A day from a date, a datetime or text (``2026-01-31`` or ``20260131``)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise LeadDataError(f"events on BigQuery: {what} '{value}' is not a day (YYYY-MM-DD or YYYYMMDD)")


def _table_name(name: str, what: str) -> str:
    """A BigQuery table name without backquotes, checked to be safe inside backquotes."""
    text = str(name).strip().strip("`")
    if not text or any(c in text for c in "`\\;") or any(not c.isprintable() or c.isspace() for c in text):
        raise LeadDataError(f"events on BigQuery: {what} '{name}' is not a table name (project.dataset.table)")
    return text


def _source_filter(cfg: EventsConfig, table: str, start: date | str | None, end: date | str | None) -> str | None:
    """The WHERE of the event source (DuckDB dialect) keeping the days ``start``..``end``:
    ``_TABLE_SUFFIX`` of a GA4 wildcard table, ``event_date`` of one GA4 table, the time
    column of a flat log. None without days (the whole table is read)."""
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise LeadDataError("events on BigQuery: give both the first and the last day, or neither")
    first, last = _day(start, "start"), _day(end, "end")
    if first > last:
        raise LeadDataError(f"events on BigQuery: start {first} is after end {last}")
    if cfg.format == "ga4":
        column = "_TABLE_SUFFIX" if table.endswith("*") else "e.event_date"
        return f"{column} BETWEEN '{first:%Y%m%d}' AND '{last:%Y%m%d}'"
    time = f"CAST(e.{quote_identifier(cfg.time_column)} AS TIMESTAMP)"
    return f"{time} >= TIMESTAMP '{first} 00:00:00' AND {time} < TIMESTAMP '{last + timedelta(days=1)} 00:00:00'"


def _bigquery_node(node: Any) -> Any:
    """One node of the DuckDB tree rewritten where sqlglot's BigQuery output would differ."""
    _, exp = _sqlglot()
    if isinstance(node, exp.DateDiff):
        # DuckDB's date_diff counts unit boundaries crossed; TIMESTAMP_DIFF counts whole units
        # (and DATE_DIFF takes no timestamps): truncating both ends first gives DuckDB's count.
        unit = node.args.get("unit") or exp.var("SECOND")
        return exp.TimestampDiff(
            this=exp.TimestampTrunc(this=node.this, unit=unit.copy()),
            expression=exp.TimestampTrunc(this=node.expression, unit=unit.copy()),
            unit=unit.copy(),
        )
    if isinstance(node, exp.DataType) and node.this in (exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPNTZ):
        # DuckDB's TIMESTAMP (naive, UTC here) would become DATETIME, not comparable with the
        # TIMESTAMP of the events and cut-offs.
        return exp.DataType.build("TIMESTAMPTZ")
    return node


def _transpile(query: Query, source: str, leads: str) -> str:
    """The DuckDB-dialect query in BigQuery Standard SQL, the placeholder relations replaced
    by the backquoted tables (their aliases kept) and its parameters by their values as
    string literals (the text is for the console or a file: no parameters there; sqlglot
    writes the literals in BigQuery's quoting)."""
    sqlglot, exp = _sqlglot()
    from sqlglot.errors import ErrorLevel, SqlglotError

    try:
        tree = sqlglot.parse_one(query.sql, read="duckdb")
        for node in list(tree.find_all(exp.Placeholder)):
            if node.name not in query.params:
                raise LeadDataError(f"events on BigQuery: the feature SQL has no value for ${node.name}")
            node.replace(exp.Literal.string(str(query.params[node.name])))
        for table in list(tree.find_all(exp.Table)):
            if table.name in (_SOURCE, _LEADS):
                real = exp.to_table(f"`{source if table.name == _SOURCE else leads}`", dialect="bigquery")
                real.set("alias", table.args.get("alias"))
                table.replace(real)
        tree = tree.transform(_bigquery_node)
        return tree.sql(dialect="bigquery", pretty=True, unsupported_level=ErrorLevel.RAISE)
    except SqlglotError as exc:
        raise LeadDataError(f"events on BigQuery: cannot translate the feature SQL: {str(exc).splitlines()[0]}") from None


def bigquery_sql(cfg: EventsConfig, table: str, leads_table: str, start: date | str | None, end: date | str | None) -> str:
    """Every configured feature per lead of ``leads_table`` (lead_row INT64, visitor STRING,
    cutoff TIMESTAMP) in BigQuery Standard SQL, from ``table``: the GA4 export (a wildcard
    ``project.dataset.events_*`` read for the days ``start``..``end`` by ``_TABLE_SUFFIX``, or
    one daily table by ``event_date``) or, with ``format: flat``, the activity log table (its
    time column within those days). Without days, the whole table is read."""
    source, leads = _table_name(table, "events table"), _table_name(leads_table, "leads table")
    events = events_sql(cfg, _SOURCE, where=_source_filter(cfg, source, start, end))
    return _transpile(features_sql(cfg, Query(f"({events.sql})", events.params), leads=_LEADS), source, leads)


def _leads_frame(cfg: ProjectConfig, leads: pd.DataFrame, at: datetime | str | None) -> pd.DataFrame:
    """The leads as uploaded: row number, visitor key (text) and cut-off (UTC timestamp)."""
    ev = cfg.events
    assert ev is not None
    if ev.lead_key not in leads.columns:
        raise LeadDataError(f"events: the leads have no column '{ev.lead_key}' (events.lead_key) to find their events")
    return pd.DataFrame(
        {
            "lead_row": np.arange(len(leads), dtype="int64"),
            "visitor": leads[ev.lead_key].astype("string").to_numpy(),
            "cutoff": pd.DatetimeIndex(cutoffs(cfg, leads, at)).tz_localize("UTC"),
        }
    )


def _client(project: str | None) -> tuple[Any, tuple[type[BaseException], ...]]:
    """The official client (credentials from the environment's default chain) and the errors
    its calls raise."""
    try:
        from google.api_core.exceptions import GoogleAPIError
        from google.cloud import bigquery
    except ImportError:
        raise LeadDataError(f"events on BigQuery need the BigQuery client: {INSTALL}") from None
    return bigquery.Client(project=project), (GoogleAPIError,)


def _scratch_table(table: str, scratch_dataset: str | None, project: str | None) -> str:
    """A new table name in the scratch dataset (default: the events table's dataset)."""
    if scratch_dataset:
        dataset = _table_name(scratch_dataset, "scratch dataset")
    else:
        parts = _table_name(table, "events table").rsplit(".", 1)
        if len(parts) < 2:
            raise LeadDataError(
                "events on BigQuery: name the events table with its dataset (dataset.events_*) "
                "or give a scratch dataset for the leads"
            )
        dataset = parts[0]
    if "." not in dataset and project:
        dataset = f"{project}.{dataset}"
    return f"{dataset}.leadscoring_leads_{uuid.uuid4().hex}"


def run_bigquery(
    cfg: ProjectConfig,
    leads: pd.DataFrame,
    *,
    table: str,
    start: date | str | None,
    end: date | str | None,
    project: str | None = None,
    at: datetime | str | None = None,
    scratch_dataset: str | None = None,
    client: Any = None,
) -> pd.DataFrame:
    """The configured behavioural features of ``leads`` computed in BigQuery (one row each,
    same index, as :func:`leadscoring.events.engine.compute_features`), from ``table`` for the
    days ``start``..``end``. ``project`` bills the query (default: the environment's);
    ``client`` is a ready client (tests, or one configured by the caller)."""
    ev = cfg.events
    if ev is None:
        raise LeadDataError("events: no events section in the configuration")
    frame = _leads_frame(cfg, leads, at)
    errors: tuple[type[BaseException], ...] = ()
    if client is None:
        client, errors = _client(project)
    scratch = _scratch_table(table, scratch_dataset, project or getattr(client, "project", None))
    sql = bigquery_sql(ev, table, scratch, start, end)
    try:
        client.query(
            f"CREATE TABLE `{scratch}` ({LEADS_COLUMNS}) OPTIONS (expiration_timestamp = "
            "TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 1 DAY))"
        ).result()
        try:
            client.load_table_from_dataframe(frame, scratch).result()
            log.info("events on BigQuery: %d leads in %s, features from %s", len(frame), scratch, table)
            out = client.query(sql).to_dataframe()
        finally:
            client.delete_table(scratch, not_found_ok=True)
    except errors as exc:
        raise LeadDataError(f"events on BigQuery: {str(exc).splitlines()[0]}") from None
    out = out.set_index("lead_row").reindex(range(len(leads)))
    out = out[[f.name for f in ev.features]].astype(float)
    out.index = leads.index
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m leadscoring.events.bigquery``: print the feature query for the console."""
    p = argparse.ArgumentParser(
        prog="python -m leadscoring.events.bigquery", description="Print the behavioural feature query in BigQuery Standard SQL."
    )
    p.add_argument("--config", default=None, help="configuration file (default: found from the working directory)")
    p.add_argument("--table", required=True, help="the events: project.dataset.events_* (GA4) or the activity table")
    p.add_argument("--start", default=None, help="first day of events (YYYY-MM-DD)")
    p.add_argument("--end", default=None, help="last day of events (YYYY-MM-DD)")
    p.add_argument(
        "--leads-table",
        default=None,
        help="table of the leads (lead_row, visitor, cutoff); default: leadscoring_leads beside the events",
    )
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config)
        if cfg.events is None:
            raise LeadDataError("events: no events section in the configuration")
        table = _table_name(args.table, "events table")
        leads = args.leads_table or (table.rsplit(".", 1)[0] + ".leadscoring_leads" if "." in table else "leadscoring_leads")
        sql = bigquery_sql(cfg.events, table, leads, args.start, args.end)
    except (ConfigError, LeadDataError) as exc:
        sys.stderr.write(f"{p.prog}: error: {exc}\n")
        return 2
    sys.stdout.write(f"-- Behavioural features per lead of `{leads}` ({LEADS_COLUMNS}).\n{sql};\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
