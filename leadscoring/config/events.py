"""The ``events`` section of the configuration: behavioural events behind the leads and the
features computed from them (see :mod:`leadscoring.events`)."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator

from leadscoring.config.sections import ColumnRoles, StrictSection

#: The kinds of behavioural feature, declared once (the SQL templates have one macro each).
EventKind = Literal[
    "count",
    "sessions",
    "active_days",
    "days_since_first",
    "days_since_last",
    "engagement_seconds",
    "sum",
    "avg",
    "max",
    "time_between",
    "share",
    "decayed",
]
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)


class EventFeature(StrictSection):
    """One behavioural feature computed from the events (SQL in ``leadscoring/events/sql``).

    ``event`` restricts to one event name (or activity type); ``page_contains`` to events whose
    page contains the text; ``days`` to the last N days before the cut-off. ``param`` is the
    event parameter (GA4) or value column (flat log) for sum/avg/max; ``from_event``/``to_event``
    the two events of ``time_between`` (seconds from the first of one to the first of the other
    after it); ``source`` the traffic source of ``share``; ``half_life_days`` the decay of
    ``decayed`` (each event weighs 0.5 ** (age in days / half-life))."""

    name: str
    kind: EventKind
    event: str | None = None
    page_contains: str | None = None
    days: float | None = Field(None, gt=0)
    param: str | None = None
    from_event: str | None = None
    to_event: str | None = None
    source: str | None = None
    half_life_days: float | None = Field(None, gt=0)
    label: str | None = None

    @model_validator(mode="after")
    def _check(self) -> EventFeature:
        need = {
            "sum": ["param"],
            "avg": ["param"],
            "max": ["param"],
            "time_between": ["from_event", "to_event"],
            "share": ["source"],
            "decayed": ["half_life_days"],
        }.get(self.kind, [])
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"events.features.{self.name}: kind '{self.kind}' needs {missing}")
        if not self.name.replace("_", "").isalnum():
            raise ValueError(f"events.features: name '{self.name}' must be letters, digits and underscores")
        return self


class DeriveConfig(StrictSection):
    """A DERIVED event log (``tools/derive_events.py``, ``make events``, outside the package):
    GA4-schema events made from the export's own activity columns, to prove the events path
    end to end on an export that comes without its web analytics. Not observed behaviour: see
    that tool for the mapping rules."""

    visits: str  # numeric column: that many sessions (session_start + ga_session_id)
    time_on_site: str | None = None  # numeric column, seconds: engagement_time_msec summing to it
    pages_per_visit: str | None = None  # numeric column: round(visits x pages per visit) page_view events
    download: str | None = None  # yes/no column: one file_download event when yes
    last_activity: str | None = None  # categorical column: one final event named after the activity
    seed: int = 0
    days_back: float = Field(30.0, ge=1)  # the events fall in the days_back days before each lead's cut-off

    def check_roles(self, roles: ColumnRoles) -> None:
        """Each named column must be a raw export column of the right role (ValueError)."""
        want = {
            "visits": roles.numeric,
            "time_on_site": roles.numeric,
            "pages_per_visit": roles.numeric,
            "download": roles.yes_no,
            "last_activity": roles.categorical,
        }
        kind = {"download": "yes_no", "last_activity": "categorical"}
        for key, allowed in want.items():
            col = getattr(self, key)
            if col is not None and col not in allowed:
                raise ValueError(f"events.derive.{key}: '{col}' is not a {kind.get(key, 'numeric')} column of data.columns")


class EventsConfig(StrictSection):
    """Behavioural events behind the leads (web analytics or an activity log), turned into
    per-lead features as of a cut-off, in SQL (DuckDB by default)."""

    path: str  # file or glob of the event files (GA4 export: events_YYYYMMDD.json/.parquet)
    format: Literal["ga4", "flat"] = "ga4"
    key: str = "user_pseudo_id"  # the visitor key in the events (GA4: user_pseudo_id or user_id)
    lead_key: str  # the export's column holding that key (e.g. a client id)
    # Flat activity log columns (format: flat).
    time_column: str = "timestamp"
    type_column: str = "activity"
    value_column: str | None = None
    session_column: str | None = None
    source_column: str | None = None
    page_column: str | None = None
    # Cut-off per lead: for training, the export's column (default data.date_column) minus
    # horizon_days; for scoring, the scoring time ("now") or that column ("cutoff_column").
    cutoff_column: str | None = None
    # An export without creation dates: one cut-off for every lead (e.g. the export's date).
    cutoff_at: str | None = None
    horizon_days: float = Field(0.0, ge=0)
    score_at: Literal["now", "cutoff_column"] = "now"
    store: str = "02_Datos/03_Trabajo/events"  # parquet folder written by `leadscoring events ingest`
    no_events: Literal["zero", "missing"] = "zero"  # counts of a lead without events: 0, or missing
    features: list[EventFeature] = Field(min_length=1)
    # How to derive a GA4-schema log from the export's own columns (DERIVED, not observed).
    derive: DeriveConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> EventsConfig:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"events.features: {dupes} defined more than once")
        if self.derive is not None and self.format != "ga4":
            raise ValueError("events.derive writes a GA4 export: events.format must be 'ga4'")
        return self
