"""The SQL of the behavioural features, rendered from the templates in ``events/sql/``
(readable SQL files with one macro per feature kind; Jinja fills in names and conditions).

:func:`events_sql` turns the configured source (GA4 export or flat activity log) into the
flat event relation; :func:`features_sql` computes every configured feature per lead as of
its cut-off. Both are written in DuckDB's dialect; :mod:`leadscoring.events.bigquery`
translates them for BigQuery.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources

import jinja2

from leadscoring.config import EventFeature, EventsConfig

#: Explicit schema of the GA4 export columns the features read (newline-delimited JSON):
#: no type guessing from the first rows of a file.
GA4_JSON_COLUMNS = {
    "event_date": "VARCHAR",
    "event_timestamp": "BIGINT",
    "event_name": "VARCHAR",
    "event_params": "STRUCT(key VARCHAR, value STRUCT(string_value VARCHAR, int_value BIGINT, "
    "float_value DOUBLE, double_value DOUBLE))[]",
    "user_pseudo_id": "VARCHAR",
    "user_id": "VARCHAR",
    "traffic_source": "STRUCT(name VARCHAR, medium VARCHAR, source VARCHAR)",
}


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


@cache
def template(name: str) -> jinja2.Template:
    """A template of ``leadscoring/events/sql/`` by file name."""
    text = resources.files("leadscoring.events").joinpath("sql", name).read_text(encoding="utf-8")
    return _environment().from_string(text)


def quote_literal(value: str) -> str:
    return value.replace("'", "''")


def params_of(features: Sequence[EventFeature]) -> list[str]:
    """The event parameters (or value columns) the features read, in first-use order."""
    return list(dict.fromkeys(f.param for f in features if f.param))


def events_sql(cfg: EventsConfig, source: str, where: str | None = None, *, portable: bool = True) -> str:
    """The flat event relation (visitor, ts, event_name, session_id, engagement_ms, source,
    page, value_<param>...) from ``source``, a relation or table function in SQL.
    ``portable=False``: GA4 parameters looked up by DuckDB list lambdas (the same values,
    far faster in DuckDB; the portable form is the one transpiled for BigQuery)."""
    params = params_of(cfg.features)
    if cfg.format == "ga4":
        return template("ga4_events.sql").render(key=cfg.key, params=params, source=source, where=where, portable=portable)
    return template("flat_events.sql").render(
        key=cfg.key,
        time=cfg.time_column,
        type=cfg.type_column,
        session=cfg.session_column,
        source_column=cfg.source_column,
        page=cfg.page_column,
        params=params,
        source=source,
        where=where,
    )


def _safe(features: Sequence[EventFeature]) -> list[EventFeature]:
    """The features with their text literals quoted for SQL."""
    out = []
    for f in features:
        update = {
            k: quote_literal(v)
            for k in ("event", "page_contains", "from_event", "to_event", "source")
            if isinstance(v := getattr(f, k), str)
        }
        out.append(f.model_copy(update=update))
    return out


def features_sql(cfg: EventsConfig, events: str, leads: str = "leads", *, portable: bool = True) -> str:
    """Every configured feature per lead of ``leads`` (lead_row, visitor, cutoff), from the
    flat event relation ``events`` (SQL), counting only events before each cut-off.
    ``portable=False``: distinct counts as DuckDB list aggregates (the same numbers, cheaper
    for the few leads of a live lookup)."""
    return template("features.sql").render(
        features=_safe(cfg.features), events=events, leads=leads, zero_without_events=cfg.no_events == "zero", portable=portable
    )
