"""The SQL of the behavioural features, rendered from the templates in ``events/sql/``
(readable SQL files with one macro per feature kind; Jinja fills in names and conditions).

:func:`events_sql` turns the configured source (GA4 export or flat activity log) into the
flat event relation; :func:`features_sql` computes every configured feature per lead as of
its cut-off. Both are written in DuckDB's dialect; :mod:`leadscoring.events.bigquery`
translates them for BigQuery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

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


@dataclass(frozen=True)
class Query:
    """SQL text and the values of its named parameters (``$name``): the values (event names,
    parameter keys, file paths, visitor keys) travel beside the text, never inside it."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)


def quote_identifier(name: str) -> str:
    """A column name as a double-quoted SQL identifier (a ``"`` in it doubled): identifiers
    cannot be query parameters."""
    return '"' + name.replace('"', '""') + '"'


class _Values:
    """Text values met while rendering a template, each replaced by a named parameter
    (``$<prefix>0``, ``$<prefix>1``, ...; one per distinct value, in first-use order)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.names: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        return "$" + self.names.setdefault(value, f"{self.prefix}{len(self.names)}")

    def query(self, sql: str) -> Query:
        return Query(sql, {name: value for value, name in self.names.items()})


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters["ident"] = quote_identifier
    return env


@cache
def template(name: str) -> jinja2.Template:
    """A template of ``leadscoring/events/sql/`` by file name."""
    text = resources.files("leadscoring.events").joinpath("sql", name).read_text(encoding="utf-8")
    return _environment().from_string(text)


def params_of(features: Sequence[EventFeature]) -> list[str]:
    """The event parameters (or value columns) the features read, in first-use order."""
    return list(dict.fromkeys(f.param for f in features if f.param))


def events_sql(cfg: EventsConfig, source: Query | str, where: str | None = None, *, portable: bool = True) -> Query:
    """The flat event relation (visitor, ts, event_name, session_id, engagement_ms, source,
    page, value_<param>...) from ``source``, a relation or table function in SQL (with its
    parameters). ``portable=False``: GA4 parameters looked up by DuckDB list lambdas (the
    same values, far faster in DuckDB; the portable form is the one transpiled for BigQuery).
    The GA4 parameter keys are query parameters ``$k0``...."""
    src = source if isinstance(source, Query) else Query(source)
    params = params_of(cfg.features)
    if cfg.format == "ga4":
        keys = _Values("k")
        sql = template("ga4_events.sql").render(
            key=cfg.key, params=params, source=src.sql, where=where, portable=portable, bind=keys
        )
        return Query(sql, {**src.params, **keys.query(sql).params})
    sql = template("flat_events.sql").render(
        key=cfg.key,
        time=cfg.time_column,
        type=cfg.type_column,
        session=cfg.session_column,
        source_column=cfg.source_column,
        page=cfg.page_column,
        params=params,
        source=src.sql,
        where=where,
    )
    return Query(sql, dict(src.params))


def features_sql(cfg: EventsConfig, events: Query | str, leads: str = "leads", *, portable: bool = True) -> Query:
    """Every configured feature per lead of ``leads`` (lead_row, visitor, cutoff), from the
    flat event relation ``events`` (a name, or a subquery in parentheses, with its
    parameters), counting only events before each cut-off. The features' text values (event
    names, page text, traffic source) are query parameters ``$v0``....
    ``portable=False``: distinct counts as DuckDB list aggregates (the same numbers, cheaper
    for the few leads of a live lookup)."""
    ev = events if isinstance(events, Query) else Query(events)
    values = _Values("v")
    sql = template("features.sql").render(
        features=cfg.features,
        events=ev.sql,
        leads=leads,
        zero_without_events=cfg.no_events == "zero",
        portable=portable,
        bind=values,
    )
    return Query(sql, {**ev.params, **values.query(sql).params})
