"""A DERIVED behavioural event log: GA4-schema events made from an export's own activity
columns, for an export that comes without its web analytics: a development tool (test and
benchmark fixtures, ``make events``), not part of the package. It proves the events path end
to end (files → DuckDB features → models → scores); it is not observed behaviour.

``python tools/derive_events.py --config CONFIG [--out FOLDER]`` (``make events``) writes it for the
configuration's export (default folder: the one of ``events.path``), replacing an earlier
derived log there; the raw exports' folder is refused.

The mapping (``events.derive`` in the configuration, or a :class:`DeriveConfig` given as an
argument) names the export's columns; per lead (``user_pseudo_id`` = the lead's key):

- visits → that many sessions (whole visits; a fraction is rounded half up), each opened by a
  ``session_start`` event whose ``ga_session_id`` is its start time in seconds (GA4's rule);
  the first session also has ``first_visit``;
- time on site (seconds) → ``engagement_time_msec`` on the sessions' ``page_view`` and
  ``user_engagement`` events, integers summing exactly to the value rounded to the
  millisecond: the ``engagement_seconds`` feature gives back the export's value (exactly for
  values with up to three decimals); with no visit, one ``user_engagement`` event outside
  any session carries it;
- pages per visit → ``page_view`` events, in total visits × pages per visit rounded half up
  to a whole number (:func:`page_view_total`): a ``count`` feature of ``page_view`` gives it;
- a yes/no download column → one ``file_download`` event when yes (in a session, or outside
  any session when the lead has no visit);
- a last-activity column → one final event, after every other, named after the activity
  (:func:`event_name`, GA4 event-name rules) with the label in its ``activity`` parameter;
- a missing visits value → no event at all for the lead (its features follow
  ``events.no_events``: zero counts by default); a missing time or pages value → no
  engagement parameter (no ``user_engagement`` event) or no page views; a missing download
  or activity → no event.

Times are random (seeded per lead key, so a lead's events do not depend on the export's row
order) within ``days_back`` days before the lead's cut-off (``events.cutoff_at``, or its date
column minus ``events.horizon_days``), every one at least 45 minutes before it: the timing
carries no information beyond the volume of activity. Every event says it is derived:
``traffic_source`` {name, medium, source} = ``(derived)`` and a user property
``derived = "true"``; a ``README.txt`` beside the daily files ``events_YYYYMMDD.json``
(newline-delimited JSON, dates in UTC, null members left out) says so too.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import sys
import unicodedata
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscoring.config import ConfigError, DeriveConfig, ProjectConfig, load_config
from leadscoring.errors import LeadDataError, OutputPathError
from leadscoring.events.engine import cutoffs
from leadscoring.ingest.load import read_leads
from leadscoring.io import check_output, replace_folder

log = logging.getLogger(__name__)

DERIVED = "(derived)"
#: Event names the generator writes itself (an activity named like one gets a prefix).
GENERATED = ("session_start", "first_visit", "page_view", "user_engagement", "file_download")
#: GA4's reserved event names and prefixes (https://support.google.com/analytics/answer/13316687).
RESERVED = frozenset(
    {
        "ad_activeview",
        "ad_click",
        "ad_exposure",
        "ad_impression",
        "ad_query",
        "ad_reward",
        "adunit_exposure",
        "app_background",
        "app_clear_data",
        "app_exception",
        "app_install",
        "app_remove",
        "app_store_refund",
        "app_store_subscription_cancel",
        "app_store_subscription_convert",
        "app_store_subscription_renew",
        "app_update",
        "app_upgrade",
        "dynamic_link_app_open",
        "dynamic_link_app_update",
        "dynamic_link_first_open",
        "error",
        "firebase_campaign",
        "first_open",
        "in_app_purchase",
        "notification_dismiss",
        "notification_foreground",
        "notification_open",
        "notification_receive",
        "os_update",
        "screen_view",
        "user_engagement",
        *GENERATED,
    }
)
RESERVED_PREFIXES = ("firebase_", "google_", "ga_")
MAX_NAME = 40
SECOND = 1_000_000  # event_timestamp is in microseconds
MARGIN = 3600 * SECOND  # sessions end an hour before the cut-off; the final event up to 10 minutes later


def event_name(activity: str) -> str:
    """A GA4 event name for an activity label: ASCII letters, digits and underscores, starting
    with a letter, at most 40 characters; a reserved or generated name, a reserved prefix or a
    leading digit gets the prefix ``activity_`` (``"Email Opened"`` → ``email_opened``)."""
    ascii_text = unicodedata.normalize("NFKD", activity).encode("ascii", "ignore").decode()
    name = re.sub(r"[^0-9a-z]+", "_", ascii_text.casefold()).strip("_") or "activity"
    if name in RESERVED or name.startswith(RESERVED_PREFIXES) or not name[0].isalpha():
        name = f"activity_{name}"
    return name[:MAX_NAME].rstrip("_")


def page_view_total(visits: Any, pages_per_visit: Any) -> np.ndarray:
    """The page views derived for each lead: visits × pages per visit rounded half up to a
    whole number (the product first rounded to 6 decimals, so 3 × 2.5 is 7.5 → 8 whatever the
    binary representation); NaN where either is missing."""
    product = np.round(np.asarray(visits, dtype=float) * np.asarray(pages_per_visit, dtype=float), 6)
    return np.floor(product + 0.5)


@dataclass(frozen=True)
class LeadActivity:
    """What the export says of one lead, as the generator uses it (None: missing)."""

    key: str
    cutoff_us: int
    visits: int | None
    engagement_ms: int | None
    page_views: int | None
    download: bool
    activity: str | None


def _whole(values: np.ndarray) -> list[int | None]:
    return [None if math.isnan(v) else int(v) for v in values]


def lead_activity(cfg: ProjectConfig, leads: pd.DataFrame, mapping: DeriveConfig, cutoffs: np.ndarray) -> list[LeadActivity]:
    """Each lead's activity under ``mapping``, from validated leads (``read_leads``); the
    configured numeric missing codes count as missing."""
    ev, d = cfg.events, cfg.data
    assert ev is not None
    keys = leads[ev.lead_key].astype("string")
    if keys.isna().any() or keys.duplicated().any():
        raise LeadDataError(
            f"events.derive: the key column '{ev.lead_key}' (events.lead_key) must be filled in and unique, one visitor per lead"
        )

    def numbers(col: str | None) -> np.ndarray:
        if col is None:
            return np.full(len(leads), np.nan)
        s = pd.to_numeric(leads[col], errors="coerce").astype(float)
        s = s.mask(s.isin(d.numeric_missing.get(col, [])))
        if (s < 0).any():
            raise LeadDataError(
                f"events.derive: column '{col}' has negative values (e.g. {s[s < 0].iloc[0]}); "
                "visits, time and pages cannot be negative"
            )
        return s.to_numpy()

    visits = numbers(mapping.visits)
    sessions = _whole(np.floor(visits + 0.5))
    engagement = _whole(np.rint(numbers(mapping.time_on_site) * 1000))
    pages = _whole(page_view_total(visits, numbers(mapping.pages_per_visit)))
    yes = {v.casefold() for v in d.yes_values}
    downloads = (
        [False] * len(leads)
        if mapping.download is None
        else [isinstance(v, str) and v.casefold() in yes for v in leads[mapping.download]]
    )
    unknown = {v.casefold() for v in d.missing_values}
    activities = (
        [None] * len(leads)
        if mapping.last_activity is None
        else [v if isinstance(v, str) and v.strip() and v.casefold() not in unknown else None for v in leads[mapping.last_activity]]
    )
    cut_us = pd.DatetimeIndex(cutoffs).as_unit("us").asi8
    return [
        LeadActivity(str(k), int(c), *rest)
        for k, c, *rest in zip(keys, cut_us, sessions, engagement, pages, downloads, activities, strict=True)
    ]


def _split(total: int, parts: int, rng: np.random.Generator, weights: np.ndarray | None = None) -> np.ndarray:
    """``total`` as ``parts`` non-negative integers summing exactly to it (random shares)."""
    p = np.full(parts, 1.0 / parts) if weights is None else weights
    return rng.multinomial(total, p)


Event = tuple[int, str, int | None, dict[str, Any]]  # (timestamp µs, name, ga_session_id, other params)


def _sessions(a: LeadActivity, rng: np.random.Generator, days_back: float) -> list[Event]:
    """The lead's sessions: session_start (+ first_visit), page views and user_engagement."""
    n = a.visits or 0
    if n == 0:
        return []
    pages = _split(a.page_views or 0, n, rng)
    ms = _split(a.engagement_ms, n, rng, rng.dirichlet(np.ones(n))) if a.engagement_ms is not None else None
    sizes = pages + (2 if ms is not None else 1)  # session_start, page views, user_engagement
    gaps = [rng.integers(SECOND, 60 * SECOND, size=k) for k in sizes]
    span = max(int(g.sum()) for g in gaps)
    first, last = a.cutoff_us - int(days_back * 86400 * SECOND), a.cutoff_us - MARGIN - span
    room = (last - first) // SECOND
    if room < n:
        raise LeadDataError(f"events.derive: lead {a.key}: {n} sessions do not fit in {days_back} days (events.derive.days_back)")
    starts = np.sort(rng.choice(room, size=n, replace=False)) * SECOND + first // SECOND * SECOND
    out: list[Event] = []
    for i, (start, n_pages, g) in enumerate(zip(starts.tolist(), pages.tolist(), gaps, strict=True)):
        sid = start // SECOND
        times = (start + np.concatenate([[0], np.cumsum(g[1:])])).tolist()
        out.append((times[0], "session_start", sid, {}))
        if i == 0:
            out.append((times[0], "first_visit", sid, {}))
        per_event = None
        if ms is not None:
            per_event = [int(ms[i]) // (n_pages + 1)] * n_pages
            per_event.append(int(ms[i]) - sum(per_event))
        for j in range(n_pages):
            params = {"page_location": f"https://derived.invalid/page/{j + 1}"}
            if per_event is not None:
                params["engagement_time_msec"] = per_event[j]
            out.append((times[1 + j], "page_view", sid, params))
        if per_event is not None:
            out.append((times[-1], "user_engagement", sid, {"engagement_time_msec": per_event[-1]}))
    return out


def lead_events(a: LeadActivity, mapping: DeriveConfig) -> list[Event]:
    """Every derived event of one lead (none when its visits are missing), in time order."""
    if a.visits is None:
        return []
    rng = np.random.default_rng([mapping.seed, zlib.crc32(a.key.encode("utf-8"))])
    events = _sessions(a, rng, mapping.days_back)
    first = a.cutoff_us - int(mapping.days_back * 86400 * SECOND)

    def anytime() -> int:
        return int(rng.integers(first, a.cutoff_us - MARGIN))

    if not events and a.engagement_ms:  # time on site without a visit: one event outside any session
        events.append((anytime(), "user_engagement", None, {"engagement_time_msec": a.engagement_ms}))
    if a.download:
        if events and a.visits:
            start, _, sid, _ = events[int(rng.integers(len(events)))]
            events.append((start + int(rng.integers(1, 30 * SECOND)), "file_download", sid, {"file_name": DERIVED}))
        else:
            events.append((anytime(), "file_download", None, {"file_name": DERIVED}))
    events.sort(key=lambda e: e[0])
    if a.activity is not None:
        ts, sid = (events[-1][0], events[-1][2]) if events else (anytime(), None)
        events.append((ts + int(rng.integers(SECOND, 600 * SECOND)), event_name(a.activity), sid, {"activity": a.activity}))
    return events


def _param(key: str, value: Any) -> dict[str, Any]:
    kind = "int_value" if isinstance(value, int) else "double_value" if isinstance(value, float) else "string_value"
    return {"key": key, "value": {kind: value}}


def ga4_record(key: str, event: Event) -> dict[str, Any]:
    """One event in the GA4 BigQuery export's layout (null members left out)."""
    ts, name, sid, params = event
    listed = ([_param("ga_session_id", sid)] if sid is not None else []) + [_param(k, v) for k, v in params.items()]
    return {
        "event_date": datetime.fromtimestamp(ts / SECOND, UTC).strftime("%Y%m%d"),
        "event_timestamp": ts,
        "event_name": name,
        "event_params": listed,
        "user_pseudo_id": key,
        "user_properties": [_param("derived", "true")],
        "device": {"category": DERIVED},
        "geo": {"country": DERIVED},
        "traffic_source": {"name": DERIVED, "medium": DERIVED, "source": DERIVED},
    }


def derive_events(cfg: ProjectConfig, leads: pd.DataFrame, mapping: DeriveConfig | None = None) -> Iterator[dict]:
    """The GA4 records derived for ``leads`` (validated, e.g. by ``read_leads``) under
    ``mapping`` (default ``events.derive``), each before its lead's cut-off."""
    mapping = mapping or (cfg.events.derive if cfg.events else None)
    if mapping is None:
        raise LeadDataError("events.derive: no mapping (add events.derive to the configuration)")
    for a in lead_activity(cfg, leads, mapping, cutoffs(cfg, leads)):
        for event in lead_events(a, mapping):
            yield ga4_record(a.key, event)


README = """DERIVED EVENTS - NOT OBSERVED BEHAVIOUR

These GA4-schema event files (BigQuery export layout, newline-delimited JSON, one file per
UTC day) were GENERATED by `python tools/derive_events.py` from the CRM export's own
activity columns, to exercise the behavioural-events path end to end. No visitor did any of
this: the counts and totals reproduce the export's columns, the times are random (seeded).
Every event carries traffic_source.name = "(derived)" and the user property derived = "true".

export: {export}
mapping (events.derive): {mapping}
leads: {leads:,}; with events: {with_events:,}; events: {events:,}; files: {files}
first event: {first}; last event: {last}; cut-off(s) up to: {cutoff}
"""


def _is_ours(path: Path) -> bool:
    return path.name == "README.txt" or (path.name.startswith("events_") and path.suffix == ".json")


def write_event_log(
    records: Iterable[dict[str, Any]], out: str | os.PathLike[str], readme: Callable[[dict[str, Any]], str]
) -> dict[str, Any]:
    """Write ``records`` as daily files ``events_YYYYMMDD.json`` in ``out`` with the
    ``README.txt`` that ``readme`` makes from the summary (events, files, first, last),
    replacing a folder that holds only such files (any other content is refused)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or not all(_is_ours(p) for p in out.iterdir())):
        raise OutputPathError(f"{out}: holds other files than a derived event log; choose an empty or new folder")
    days: defaultdict[str, list[str]] = defaultdict(list)
    times = []
    for r in records:
        days[r["event_date"]].append(json.dumps(r, separators=(",", ":"), ensure_ascii=False))
        times.append(r["event_timestamp"])
    tmp = out.with_name(f".{out.name}.derive-tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for day, lines in sorted(days.items()):
            (tmp / f"events_{day}.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
        stamp = (lambda us: pd.Timestamp(us, unit="us", tz="UTC").isoformat()) if times else (lambda _: "-")
        summary = {
            "events": len(times),
            "files": len(days),
            "first": stamp(min(times, default=0)),
            "last": stamp(max(times, default=0)),
        }
        (tmp / "README.txt").write_text(readme(summary), encoding="utf-8")
        replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def default_folder(cfg: ProjectConfig) -> Path:
    """The folder of ``events.path`` (a glob's folder, or the path itself when a folder)."""
    assert cfg.events is not None
    path = cfg.root_path(cfg.events.path)
    return path.parent if any(ch in path.name for ch in "*?[") or path.suffix else path


def derive_log(
    cfg: ProjectConfig,
    out: str | os.PathLike[str] | None = None,
    mapping: DeriveConfig | None = None,
    leads: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Derive the event log of the configuration's export (or ``leads``, validated) under
    ``mapping`` (default ``events.derive``) into ``out`` (default :func:`default_folder`)."""
    if cfg.events is None:
        raise LeadDataError("events.derive: the configuration has no events section")
    mapping = mapping or cfg.events.derive
    if mapping is None:
        raise LeadDataError("events.derive: no mapping (add events.derive to the configuration)")
    dest = Path(out) if out is not None else default_folder(cfg)
    raw = cfg.path("raw_data")
    check_output(dest, inputs=[raw], protected=[raw.parent], folder=True)
    if leads is None:
        leads = read_leads(raw, cfg, require_target=False)
    cut = cutoffs(cfg, leads)
    with_events = sum(a.visits is not None for a in lead_activity(cfg, leads, mapping, cut))
    facts = {
        "export": raw.name,
        "mapping": mapping.model_dump_json(),
        "leads": len(leads),
        "with_events": with_events,
        "cutoff": pd.Timestamp(cut.max()).isoformat(),
    }
    summary = write_event_log(derive_events(cfg, leads, mapping), dest, lambda s: README.format(**facts, **s))
    summary.update(folder=str(dest), leads=len(leads), with_events=with_events, derived=True)
    log.info(
        "derived %d events for %d leads (%d with events) in %d daily files in %s — DERIVED, not observed",
        summary["events"],
        len(leads),
        with_events,
        summary["files"],
        dest,
    )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """``python tools/derive_events.py --config CONFIG [--out FOLDER]``."""
    parser = argparse.ArgumentParser(
        prog="python tools/derive_events.py",
        description="Derive a GA4-schema event log from the export's own columns (events.derive): DERIVED, not observed behaviour.",
    )
    parser.add_argument("--config", help="configuration file (default: 01_Documentos/config.yaml, found upwards)")
    parser.add_argument("--out", help="folder of the daily files (default: the folder of events.path)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        derive_log(load_config(args.config), args.out)
    except (ConfigError, LeadDataError, OutputPathError) as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
