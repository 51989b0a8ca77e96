"""What the CRM says became of each lead: the status map and the outcome history.

The status map (:class:`StatusMap`) turns a CRM record's raw status fields into an outcome,
``converted``, ``lost`` or ``open``: ``crm.status_map`` (else the connector's usual map) lists,
per outcome, rules ``{field: value or [values]}``; a rule matches when all its fields match
(compared as text, case-insensitively, booleans as ``true``/``false``, a list meaning any of
its values); the first match wins, trying ``converted``, then ``lost``, then ``open``. A record
no rule maps follows ``crm.unmapped``: ``fail`` stops the pull naming the CRM, the lead, the
fields and their values; ``warn`` counts it as open and reports each distinct value once with
its count; ``open`` counts it as open quietly. Deleted and archived records are mapped by their
fields like the others (an archived lost Odoo lead is ``lost`` by its rule); their rows say
``deleted``.

The outcome history (``paths.outcome_history``, CSV, UTF-8) keeps every change pulled, one row
per change: ``lead_id, outcome, modified_at, outcome_at, deleted, status`` (``status``: the raw
fields as compact JSON with sorted keys; times ISO 8601 UTC with ``Z``; ``deleted`` ``true`` or
``false``). It is append-only: a lead gets a row only when its (outcome, deleted, status)
differs from its latest row, so a pull's overlap and a re-run add nothing, and a reversal (a
won lead reopened, a lost lead recycled) is simply a later row: the latest wins
(:func:`latest_outcomes`), the history keeps both. Rows carry no wall-clock time, so the same
pull gives the same bytes. Appends are atomic (a copy of the file with the rows appended,
renamed over it): an interrupted write loses nothing already there.

This module reads no CRM (no HTTP): ``retrain`` reads the history through it.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd

from leadscoring.config import ConfigError, CrmConfig
from leadscoring.errors import LeadDataError
from leadscoring.io import atomic_path, first_non_utf8, last_line_ended

log = logging.getLogger(__name__)

Outcome = Literal["converted", "lost", "open"]

#: The outcomes, in the order the status map tries them (the first match wins).
OUTCOMES: tuple[Outcome, ...] = ("converted", "lost", "open")

#: The outcome history's columns, in file order.
HISTORY_COLUMNS = ("lead_id", "outcome", "modified_at", "outcome_at", "deleted", "status")

_MISSING = "(missing)"


class UnmappedStatusError(LeadDataError):
    """A CRM status no rule of the status map maps, under ``crm.unmapped: fail``."""


class OutcomeHistoryError(LeadDataError):
    """The outcome history file is unreadable or corrupt (one line: file, row, field, value)."""


class StatusRecord(Protocol):
    """What the status map reads of a :class:`leadscoring.crm.connector.Record` (this module
    imports no connector: ``retrain`` reads the history without the HTTP client)."""

    @property
    def lead_id(self) -> str: ...

    @property
    def fields(self) -> Mapping[str, Any]: ...


class UsualMap(Protocol):
    """What the status map asks of a :class:`leadscoring.crm.connector.Connector`."""

    def default_status_map(self) -> dict[str, list[dict[str, Any]]]: ...


# -- the status map ---------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A value as the status map compares it: text, trimmed, case-folded; booleans as
    ``true``/``false``, whole floats without ``.0``, None as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip().casefold()


def _shown(value: Any) -> str:
    """A raw value as messages show it (JSON, so text is quoted and None is null)."""
    return json.dumps(value, ensure_ascii=False, default=str)


@dataclass(frozen=True)
class Rule:
    """One rule: field -> the accepted values (as :func:`_text` makes them)."""

    accepted: tuple[tuple[str, frozenset[str]], ...]

    def matches(self, fields: Mapping[str, Any]) -> bool:
        for name, values in self.accepted:
            raw = fields.get(name)
            got = raw if isinstance(raw, list | tuple) else [raw]
            if not any(_text(v) in values for v in got):
                return False
        return True


@dataclass(frozen=True)
class Mapped:
    """What the status map made of a record: its ``outcome``, and for a record no rule maps
    (counted as open under ``warn``/``open``) the fields read and their values (``unmapped``)."""

    outcome: Outcome
    unmapped: str | None = None


@dataclass(frozen=True)
class StatusMap:
    """Outcome -> rules (see the module), the unmapped policy, and the CRM's name for messages."""

    rules: Mapping[Outcome, tuple[Rule, ...]]
    unmapped: Literal["fail", "warn", "open"] = "warn"
    crm: str = "CRM"
    source: str = "crm.status_map"

    @classmethod
    def from_rules(
        cls,
        rules: Mapping[str, Sequence[Mapping[str, Any]]],
        *,
        unmapped: Literal["fail", "warn", "open"] = "warn",
        crm: str = "CRM",
        source: str = "crm.status_map",
    ) -> StatusMap:
        """A status map from ``{outcome: [{field: value or [values]}, ...]}``; a rule that is
        empty, not a mapping, or has a value that is a mapping is a one-line
        :class:`ConfigError` naming ``source.outcome[i]``."""
        built: dict[Outcome, tuple[Rule, ...]] = {}
        for outcome, items in rules.items():
            if outcome not in OUTCOMES:
                raise ConfigError(f"{source}: '{outcome}' is not an outcome; use converted, lost or open")
            parsed = []
            for i, rule in enumerate(items or []):
                where = f"{source}.{outcome}[{i}]"
                if not isinstance(rule, Mapping) or not rule:
                    raise ConfigError(f"{where}: a rule is a non-empty mapping {{field: value or [values]}}, got {rule!r}")
                accepted = []
                for name, value in rule.items():
                    values = value if isinstance(value, list | tuple) else [value]
                    if not values or any(isinstance(v, Mapping | list | tuple) for v in values):
                        raise ConfigError(f"{where}.{name}: a value or a list of values, got {value!r}")
                    accepted.append((str(name), frozenset(_text(v) for v in values)))
                parsed.append(Rule(tuple(accepted)))
            built[outcome] = tuple(parsed)
        return cls(built, unmapped, crm, source)

    @classmethod
    def from_config(cls, crm: CrmConfig, connector: UsualMap | None = None) -> StatusMap:
        """``crm.status_map``, or the connector's usual map (``default_status_map()``) when it
        is empty, with ``crm.unmapped``."""
        if crm.status_map:
            return cls.from_rules(crm.status_map, unmapped=crm.unmapped, crm=crm.kind)
        if connector is None:
            raise ConfigError(f"{crm.kind}: crm.status_map is empty and no connector gives a usual map; write one")
        return cls.from_rules(
            connector.default_status_map(),
            unmapped=crm.unmapped,
            crm=crm.kind,
            source=f"the {crm.kind} connector's usual status map",
        )

    @property
    def fields(self) -> list[str]:
        """The fields the rules read, in order of first mention."""
        seen: dict[str, None] = {}
        for outcome in OUTCOMES:
            for rule in self.rules.get(outcome, ()):
                for name, _ in rule.accepted:
                    seen.setdefault(name, None)
        return list(seen)

    def match(self, fields: Mapping[str, Any]) -> Outcome | None:
        """The outcome of the first rule matching ``fields`` (converted, lost, open), or None."""
        for outcome in OUTCOMES:
            if any(rule.matches(fields) for rule in self.rules.get(outcome, ())):
                return outcome
        return None

    def describe(self, fields: Mapping[str, Any]) -> str:
        """The fields the rules read and their values, e.g. ``status="Weird", stage=null``
        (every field of the record when the rules read none)."""
        names = self.fields or sorted(fields)
        return ", ".join(f"{n}={_shown(fields[n]) if n in fields else _MISSING}" for n in names)

    def resolve(self, record: StatusRecord) -> Mapped:
        """The outcome of one record, with the unmapped policy applied: ``fail`` raises
        :class:`UnmappedStatusError` (one line: CRM, lead, fields and values)."""
        outcome = self.match(record.fields)
        if outcome is not None:
            return Mapped(outcome)
        key = self.describe(record.fields)
        if self.unmapped == "fail":
            raise UnmappedStatusError(
                f"{self.crm}: lead {record.lead_id}: status not in the status map: {key}; "
                "map it in crm.status_map under converted, lost or open, or set crm.unmapped: warn"
            )
        return Mapped("open", key)


# -- the outcome history ----------------------------------------------------------------------


def iso(when: datetime) -> str:
    """A time as the history writes it: UTC, ISO 8601 with ``Z``, microseconds only when
    there are some (a naive time is taken as UTC)."""
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    text = when.isoformat(timespec="microseconds" if when.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def status_text(fields: Mapping[str, Any]) -> str:
    """The raw status fields as the history keeps them: compact JSON with sorted keys."""
    return json.dumps(dict(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass(frozen=True)
class OutcomeRow:
    """One row of the outcome history: a lead's state as of ``modified_at``."""

    lead_id: str
    outcome: Outcome
    modified_at: datetime
    outcome_at: datetime | None
    deleted: bool
    status: str

    @property
    def state(self) -> tuple[str, bool, str]:
        """What a change is: a row is appended only when this differs from the lead's latest."""
        return (self.outcome, self.deleted, self.status)

    def cells(self) -> list[str]:
        return [
            self.lead_id,
            self.outcome,
            iso(self.modified_at),
            iso(self.outcome_at) if self.outcome_at is not None else "",
            "true" if self.deleted else "false",
            self.status,
        ]


def rows_frame(rows: Sequence[OutcomeRow]) -> pd.DataFrame:
    """Outcome history rows (e.g. a pull's, not yet written) as :func:`read_outcome_history`
    reads them from the file: the same columns and types."""
    return pd.DataFrame(
        {
            "lead_id": pd.Series([r.lead_id for r in rows], dtype=object),
            "outcome": pd.Series([r.outcome for r in rows], dtype=object),
            "modified_at": pd.to_datetime([r.modified_at for r in rows], utc=True).astype("datetime64[us, UTC]"),
            "outcome_at": pd.to_datetime([r.outcome_at for r in rows], utc=True).astype("datetime64[us, UTC]"),
            "deleted": pd.Series([r.deleted for r in rows], dtype=bool),
            "status": pd.Series([r.status for r in rows], dtype=object),
        }
    )


def _empty_history() -> pd.DataFrame:
    return rows_frame([])


def _not_utf8(path: Path) -> OutcomeHistoryError:
    """Where the file stops being UTF-8: its byte, row and line (pandas counts from its chunk)."""
    bad = first_non_utf8(path)
    if bad is None:
        return OutcomeHistoryError(f"{path}: not UTF-8 text")
    return OutcomeHistoryError(f"{path}: row {bad.line - 1} (line {bad.line}) is not UTF-8 text ({bad.reason} at byte {bad.byte})")


def _bad(path: Path, pos: int, field: str, value: str, why: str) -> OutcomeHistoryError:
    return OutcomeHistoryError(f"{path}: row {pos + 1} (line {pos + 2}), field '{field}': {_shown(value)} {why}")


def _times(frame: pd.DataFrame, path: Path, column: str, *, optional: bool) -> pd.Series:
    text = frame[column]
    parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    bad = parsed.isna() & ~(text.eq("") if optional else False)
    if bad.any():
        pos = int(bad.to_numpy().nonzero()[0][0])
        raise _bad(path, pos, column, text.iloc[pos], "is not an ISO 8601 date and time")
    return parsed.astype("datetime64[us, UTC]")


def read_outcome_history(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Every row of the outcome history at ``path``, in file order: ``lead_id`` and ``status``
    text, ``outcome`` one of :data:`OUTCOMES`, ``modified_at`` and ``outcome_at`` UTC times
    (``outcome_at`` NaT when unknown), ``deleted`` bool. No file (or an empty one): no rows.
    A corrupt file is a one-line :class:`OutcomeHistoryError` naming the file, the row (and
    its line), the field and the value."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return _empty_history()
    except FileNotFoundError:
        return _empty_history()
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8")
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise OutcomeHistoryError(f"{path}: not a readable outcome history ({' '.join(str(exc).split())})") from None
    if not isinstance(frame.index, pd.RangeIndex):  # every row one field more than the header: read as an index
        n = len(HISTORY_COLUMNS)
        raise OutcomeHistoryError(f"{path}: row 1 (line 2) and the others have more fields than the header's {n}")
    if tuple(frame.columns) != HISTORY_COLUMNS:
        raise OutcomeHistoryError(f"{path}: the header is {list(frame.columns)}, expected {list(HISTORY_COLUMNS)}")
    if frame.empty:
        return _empty_history()
    blank = frame["lead_id"].str.strip().eq("")
    if blank.any():
        pos = int(blank.to_numpy().nonzero()[0][0])
        raise _bad(path, pos, "lead_id", frame["lead_id"].iloc[pos], "is empty")
    wrong = ~frame["outcome"].isin(OUTCOMES)
    if wrong.any():
        pos = int(wrong.to_numpy().nonzero()[0][0])
        raise _bad(path, pos, "outcome", frame["outcome"].iloc[pos], "is not converted, lost or open")
    flags = frame["deleted"].map({"true": True, "false": False})
    if flags.isna().any():
        pos = int(flags.isna().to_numpy().nonzero()[0][0])
        raise _bad(path, pos, "deleted", frame["deleted"].iloc[pos], "is not true or false")
    for pos, text in enumerate(frame["status"].tolist()):
        try:
            ok = isinstance(json.loads(text), dict)
        except ValueError:
            ok = False
        if not ok:
            raise _bad(path, pos, "status", text, "is not a JSON object")
    return pd.DataFrame(
        {
            "lead_id": frame["lead_id"].astype(object),
            "outcome": frame["outcome"].astype(object),
            "modified_at": _times(frame, path, "modified_at", optional=False),
            "outcome_at": _times(frame, path, "outcome_at", optional=True),
            "deleted": flags.astype(bool),
            "status": frame["status"].astype(object),
        }
    )


def latest_rows(history: pd.DataFrame) -> pd.DataFrame:
    """One row per lead of a history frame (:func:`read_outcome_history`): its latest by
    ``modified_at``, ties broken by file order (the later row wins); sorted by lead id."""
    if history.empty:
        return history.reset_index(drop=True)
    ordered = history.reset_index(drop=True).sort_values("modified_at", kind="stable")
    return ordered.drop_duplicates("lead_id", keep="last").sort_values("lead_id", kind="stable").reset_index(drop=True)


def latest_outcomes(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The latest state of each lead in the outcome history at ``path`` (the latest row by
    ``modified_at``, ties by file order): the columns of :func:`read_outcome_history`, one
    row per lead, sorted by lead id. A reversal is simply the later row."""
    return latest_rows(read_outcome_history(path))


def latest_states(latest: pd.DataFrame) -> dict[str, tuple[datetime, tuple[str, bool, str]]]:
    """Lead id -> (modified_at, (outcome, deleted, status)) of its latest row (``latest``: the
    history's :func:`latest_rows`)."""
    return {
        lead: (when.to_pydatetime(), (outcome, bool(deleted), status))
        for lead, when, outcome, deleted, status in zip(
            latest["lead_id"], latest["modified_at"], latest["outcome"], latest["deleted"], latest["status"], strict=True
        )
    }


def append_outcome_rows(path: str | os.PathLike[str], rows: Iterable[OutcomeRow]) -> int:
    """Append ``rows`` (in the order given) to the outcome history at ``path``, atomically:
    the file is copied beside itself, the rows appended to the copy, and the copy renamed
    over it, so an interruption leaves the file as it was. Writes the header to a new file.
    Returns the rows appended (nothing is written for none)."""
    rows = list(rows)
    if not rows:
        return 0
    path = Path(path)
    with atomic_path(path) as tmp:
        fresh = not path.is_file() or path.stat().st_size == 0
        if not fresh:
            shutil.copyfile(path, tmp)
        line_end = last_line_ended(tmp)
        with tmp.open("a", encoding="utf-8", newline="") as fh:
            if not line_end:  # a hand-edited file without its last line end
                fh.write("\n")
            writer = csv.writer(fh, lineterminator="\n")
            if fresh:
                writer.writerow(HISTORY_COLUMNS)
            writer.writerows(r.cells() for r in rows)
    log.info("outcome history %s: %d row(s) appended", path, len(rows))
    return len(rows)
