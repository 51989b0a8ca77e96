"""``leadscoring pull``: read what became of the leads in the CRM into the outcome history.

The window. Each pull reads the leads the CRM modified in ``[since, until]``, both inclusive:
``until`` is this machine's clock, frozen when the pull starts; ``since`` is the previous
pull's watermark minus ``crm.overlap_seconds`` (late writes, a CRM committing a change stamped
a little earlier), or the beginning of time (1970-01-01Z) on the first pull. Records come in
ascending (modified_at, lead_id) order, so leads modified in the same instant are told apart by
their id; a record stamped after ``until`` (a CRM clock ahead of ours) is left for the next
pull.

The watermark (``paths.crm_state``/``pull_watermark.json``, one per destination: the CRM's kind
and its normalised URL) is the greatest ``modified_at`` read, a time the CRM itself wrote.
It never goes back, and it does not move when nothing came: advancing it to ``until`` (our
clock) would skip the changes the CRM stamps, by its own clock, before our ``until`` but
makes visible only later by more than the overlap. A pull with nothing new re-reads from the
same point, which costs the overlap's records and nothing else. Re-read records add nothing to
the history (a lead gets a row only when its state changed).

Order of writes. Nothing is written until every record has been read and mapped: then the
outcome history is appended (atomically), then the watermark saved (atomically). A pull that
fails anywhere (the CRM, a status under ``crm.unmapped: fail``, a full disk) leaves both as
they were, and the next pull gives the very same history. One pull at a time per project (a
lock file in ``paths.crm_state``).

``known_ids``: connectors of CRMs that cannot list by modification time poll the leads this
project scored, by id: the ids of the score history (``paths.score_history``), read only if
the connector asks for them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from leadscoring.config import ConfigError, ProjectConfig
from leadscoring.crm.connector import utc
from leadscoring.crm.http import destination
from leadscoring.crm.outcomes import (
    OUTCOMES,
    Mapped,
    OutcomeRow,
    StatusMap,
    append_outcome_rows,
    iso,
    latest_rows,
    latest_states,
    read_outcome_history,
    rows_frame,
    status_text,
)
from leadscoring.errors import LeadDataError
from leadscoring.io import exclusive_lock, read_json_object, write_json

if TYPE_CHECKING:
    from leadscoring.crm.connector import Connector, Record
    from leadscoring.crm.http import JsonClient

log = logging.getLogger(__name__)

#: The watermark file in ``paths.crm_state``.
WATERMARK_FILE = "pull_watermark.json"
#: The pull's lock file in ``paths.crm_state`` (hidden).
PULL_LOCK = ".pull.lock"
#: A pull lock older than this (seconds) is taken to be left by a pull that died.
STALE_PULL_SECONDS = 6 * 60 * 60
#: The lower bound of the first pull: the beginning of time.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class PullSummary:
    """What a pull did: the window read, records read (by outcome), changes appended to the
    outcome history, statuses no rule mapped (fields and values -> leads), and the watermark."""

    crm: str
    destination: str
    since: datetime
    until: datetime
    history: Path
    unmapped_policy: str = "warn"
    dry_run: bool = False
    read: int = 0
    deleted: int = 0  # of ``read``: deleted, merged or archived in the CRM
    outside_window: int = 0  # stamped after ``until``: left for the next pull
    stale: int = 0  # older than the lead's latest row in the history: not appended
    gone_unknown: int = 0  # no longer in the CRM and never seen by a pull: skipped
    appended: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    appended_outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    unmapped: dict[str, int] = field(default_factory=dict)
    previous_watermark: datetime | None = None
    watermark: datetime | None = None
    rows: list[OutcomeRow] = field(default_factory=list, repr=False)  # the changes (appended, or not in a dry run)
    #: The outcome history after the pull (:func:`read_outcome_history`'s frame): what was read,
    #: with ``rows`` after it (also in a dry run, which writes nothing), so a caller need not read it again.
    outcome_history: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def first(self) -> bool:
        """Whether this is the first pull from this destination (no watermark before)."""
        return self.previous_watermark is None

    def __str__(self) -> str:
        counts = ", ".join(f"{k} {self.outcomes.get(k, 0)}" for k in OUTCOMES)
        start = "the beginning (first pull)" if self.first else iso(self.since)
        text = f"{self.crm} {self.destination}: read {self.read} lead(s) modified from {start} to {iso(self.until)} ({counts}"
        text += f"; {self.deleted} deleted or archived)" if self.deleted else ")"
        if self.gone_unknown:
            text += f"; {self.gone_unknown} scored lead(s) the CRM does not have, never seen by a pull: skipped"
        verb = "would be appended" if self.dry_run else "appended"
        text += f"; {self.appended} change(s) {verb} to {self.history}"
        if self.appended:
            text += " (" + ", ".join(f"{k} {v}" for k, v in self.appended_outcomes.items() if v) + ")"
        if self.watermark is None:
            text += "; no watermark yet (nothing read)"
        elif self.watermark == self.previous_watermark:
            text += f"; watermark unchanged at {iso(self.watermark)}"
        else:
            was = iso(self.previous_watermark) if self.previous_watermark is not None else "none"
            text += f"; watermark {'would move' if self.dry_run else 'moved'} to {iso(self.watermark)} (was {was})"
        text += "."
        if self.unmapped:
            shown = "; ".join(f"{k} ({n})" for k, n in sorted(self.unmapped.items(), key=lambda kv: (-kv[1], kv[0]))[:5])
            more = f"; and {len(self.unmapped) - 5} more" if len(self.unmapped) > 5 else ""
            text += f" {sum(self.unmapped.values())} lead(s) with a status not in the status map counted as open: {shown}{more}."
        if self.outside_window:
            text += f" {self.outside_window} record(s) stamped after {iso(self.until)} left for the next pull."
        if self.stale:
            text += f" {self.stale} record(s) older than their lead's latest row in the history were not appended."
        if self.dry_run:
            text += " Dry run: nothing written."
        return text


def _now() -> datetime:
    return datetime.now(UTC)


def destination_key(kind: str, url: str) -> str:
    """What the watermark is kept by: the CRM's kind and its normalised base URL."""
    return f"{kind} {destination(url)}"


def _read_state(path: Path) -> dict[str, Any]:
    return read_json_object(path, "pull watermark file", "delete it to pull everything again")


def read_watermark(path: str | os.PathLike[str], key: str) -> datetime | None:
    """The watermark saved for destination ``key`` in the watermark file at ``path`` (None
    before the first pull); a corrupt file is a one-line error naming it."""
    path = Path(path)
    entry = _read_state(path).get(key)
    if entry is None:
        return None
    try:
        return utc(datetime.fromisoformat(str(entry["watermark"]).replace("Z", "+00:00")))
    except (KeyError, TypeError, ValueError):
        raise LeadDataError(
            f"{path}: the watermark of {key} is not a date and time ({entry!r}); delete the entry to pull everything again"
        ) from None


def save_watermark(path: str | os.PathLike[str], key: str, watermark: datetime, until: datetime) -> None:
    """Save destination ``key``'s watermark (and the ``until`` of the pull that set it) in the
    watermark file at ``path``, atomically, keeping the other destinations'."""
    path = Path(path)
    state = _read_state(path)
    state[key] = {"watermark": iso(watermark), "until": iso(until)}
    write_json(dict(sorted(state.items())), path)


class ScoredIds(Collection[str]):
    """The lead ids of the score history at ``path``, read on first use (sorted, unique)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self._ids: list[str] | None = None
        self._set: frozenset[str] = frozenset()

    def _load(self) -> list[str]:
        if self._ids is None:
            import pyarrow.compute as pc

            from leadscoring.serving.history import read_history

            column = read_history(self.path, columns=("lead_id",))["lead_id"]
            self._ids = sorted(pc.unique(column).drop_null().to_pylist())
            self._set = frozenset(self._ids)
            log.info("score history %s: %d scored lead(s) to poll", self.path, len(self._ids))
        return self._ids

    def __contains__(self, item: object) -> bool:
        self._load()
        return item in self._set

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


@dataclass(frozen=True)
class _Read:
    record: Record
    modified_at: datetime
    mapped: Mapped
    status: str | None = None  # a gone lead's: its last known status (else the record's fields)
    outcome_at: datetime | None = None  # a gone lead's: when its last known outcome happened


def _read_window(
    connector: Connector,
    client: JsonClient,
    status_map: StatusMap,
    summary: PullSummary,
    known_ids: Collection[str],
    progress: bool,
    latest: dict[str, tuple[datetime, tuple[str, bool, str]]],
    closed_at: dict[str, datetime],
) -> list[_Read]:
    """Every record of the window, mapped (``crm.unmapped: fail`` stops here), with the
    summary's counts; records stamped after ``until`` are counted and left out. A lead the CRM
    no longer has (:attr:`Record.gone`) keeps its ``latest`` outcome and status (the outcome
    history's) and, when converted or lost, the time of that outcome (``closed_at``: it did not
    happen again at the pull), deleted; one the history does not know is skipped."""
    from tqdm import tqdm

    read: list[_Read] = []
    unmapped: Counter[str] = Counter()
    bar = tqdm(desc="pull", unit=" leads", disable=not progress, mininterval=1.0)
    try:
        for record in connector.pull(client, summary.since, summary.until, known_ids):
            bar.update(1)
            modified = utc(record.modified_at)
            if modified > summary.until:
                summary.outside_window += 1
                continue
            if record.gone:
                lead = str(record.lead_id)
                before = latest.get(lead)
                if before is None:
                    summary.gone_unknown += 1
                    continue
                mapped, status, outcome_at = Mapped(before[1][0]), before[1][2], closed_at.get(lead)
            else:
                mapped, status, outcome_at = status_map.resolve(record), None, None
            read.append(_Read(record, modified, mapped, status, outcome_at))
            summary.read += 1
            summary.outcomes[mapped.outcome] += 1
            summary.deleted += bool(record.deleted)
            if mapped.unmapped is not None:
                unmapped[mapped.unmapped] += 1
    finally:
        bar.close()
    summary.unmapped = dict(sorted(unmapped.items()))
    for key, n in summary.unmapped.items():
        (log.warning if summary.unmapped_policy == "warn" else log.debug)(
            "%s: %d lead(s) with a status not in the status map, counted as open: %s", summary.crm, n, key
        )
    return read


def _changes(
    read: list[_Read], latest: dict[str, tuple[datetime, tuple[str, bool, str]]], summary: PullSummary
) -> list[OutcomeRow]:
    """The rows to append, in ascending (modified_at, lead_id): a record whose state differs
    from its lead's latest row (in the history, or earlier in this pull); a record older than
    that row is not appended (counted as stale)."""
    rows: list[OutcomeRow] = []
    for item in sorted(read, key=lambda r: (r.modified_at, str(r.record.lead_id))):
        rec = item.record
        row = OutcomeRow(
            lead_id=str(rec.lead_id),
            outcome=item.mapped.outcome,
            modified_at=item.modified_at,
            outcome_at=item.outcome_at if rec.gone else (utc(rec.outcome_at) if rec.outcome_at is not None else None),
            deleted=bool(rec.deleted),
            status=item.status if item.status is not None else status_text(rec.fields),
        )
        before = latest.get(row.lead_id)
        if before is not None:
            if row.modified_at < before[0]:
                summary.stale += 1
                continue
            if row.state == before[1]:
                continue
        latest[row.lead_id] = (row.modified_at, row.state)
        rows.append(row)
        summary.appended_outcomes[row.outcome] += 1
    summary.appended = len(rows)
    return rows


def pull_outcomes(
    cfg: ProjectConfig,
    *,
    connector: Connector | None = None,
    client: JsonClient | None = None,
    now: Callable[[], datetime] | None = None,
    dry_run: bool = False,
    progress: bool = False,
) -> PullSummary:
    """Pull the outcomes of the leads the CRM (``cfg.crm``) modified since the last pull into
    the outcome history, then move the watermark (see the module).

    ``connector`` and ``client`` default to the configured CRM's (tests pass their own; a
    client given here is not closed); ``now`` is the clock that freezes the window's upper
    bound; ``dry_run`` reads and maps everything but writes nothing (no history, no
    watermark, no lock); ``progress`` shows a count of leads read on stderr.
    Raises :class:`ConfigError` without a ``crm:`` section, :class:`UnmappedStatusError`
    under ``crm.unmapped: fail``, ``CrmError`` when the CRM fails; nothing is written then."""
    crm = cfg.crm
    if crm is None:
        raise ConfigError("the configuration has no crm: section (kind, url, ...); add one to pull outcomes from the CRM")
    if connector is None:
        from leadscoring.crm import connector_for

        connector = connector_for(crm)
    status_map = StatusMap.from_config(crm, connector)
    key = destination_key(crm.kind, crm.url)
    state_dir, history_path = cfg.path("crm_state"), cfg.path("outcome_history")
    watermark_path = state_dir / WATERMARK_FILE
    until = utc((now or _now)())
    lock: contextlib.AbstractContextManager[None] = (
        contextlib.nullcontext()
        if dry_run
        else exclusive_lock(state_dir / PULL_LOCK, f"pull from {key}", stale_seconds=STALE_PULL_SECONDS)
    )
    with lock:
        previous = read_watermark(watermark_path, key)
        since = EPOCH if previous is None else previous - timedelta(seconds=crm.overlap_seconds)
        if since > until:
            log.warning(
                "%s: the watermark %s is after this machine's clock %s; reading from %s", key, iso(since), iso(until), iso(until)
            )
            since = until
        summary = PullSummary(
            crm=crm.kind,
            destination=destination(crm.url),
            since=since,
            until=until,
            history=history_path,
            unmapped_policy=crm.unmapped,
            dry_run=dry_run,
            previous_watermark=previous,
        )
        history = read_outcome_history(history_path)  # a corrupt history stops here, before the CRM is read
        latest_frame = latest_rows(history)
        latest, closed_at = latest_states(latest_frame), _closed_at(latest_frame)
        log.info("%s: reading the leads modified from %s to %s", key, iso(since), iso(until))
        own_client = client is None
        if own_client:
            from leadscoring.crm import json_client

            client = json_client(crm)
        assert client is not None
        try:
            with _redirect_logging(progress):
                known = ScoredIds(cfg.path("score_history"))
                read = _read_window(connector, client, status_map, summary, known, progress, latest, closed_at)
        finally:
            if own_client:
                client.close()
        summary.rows = _changes(read, latest, summary)
        summary.outcome_history = pd.concat([history, rows_frame(summary.rows)], ignore_index=True) if summary.rows else history
        seen = max((r.modified_at for r in read if not r.record.gone), default=None)  # our clock, not the CRM's
        candidates = [t for t in (previous, seen) if t is not None]
        summary.watermark = max(candidates) if candidates else None
        if not dry_run:
            append_outcome_rows(history_path, summary.rows)  # the history first ...
            if summary.watermark is not None and summary.watermark != previous:
                save_watermark(watermark_path, key, summary.watermark, until)  # ... then the watermark
    log.info("%s", summary)
    return summary


def _closed_at(latest: pd.DataFrame) -> dict[str, datetime]:
    """Lead id -> when its latest outcome, converted or lost, happened (the CRM's outcome time,
    else that row's modification time); ``latest``: the history's :func:`latest_rows`."""
    closed = latest[latest["outcome"] != "open"]
    when = closed["outcome_at"].fillna(closed["modified_at"])
    return {str(lead): t.to_pydatetime() for lead, t in zip(closed["lead_id"], when, strict=True)}


@contextlib.contextmanager
def _redirect_logging(progress: bool) -> Iterator[None]:
    """Log lines printed above the progress bar, not through it (only when it is shown)."""
    if not progress:
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():
        yield
