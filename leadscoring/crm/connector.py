"""What every CRM connector offers: how to write a lead's score fields (push) and how to
read the leads changed in a time window (pull), in the CRM's own API.

A connector knows one CRM's URLs, paging, filters and encodings. It does not retry, wait,
log credentials, keep state or map statuses: the shared HTTP client (:mod:`leadscoring.crm.http`)
retries and honours ``Retry-After``; the pull (:mod:`leadscoring.crm.pull`) owns the
watermark, the status map and the outcome history; the push (:mod:`leadscoring.crm.push`)
owns concurrency, the circuit breaker, idempotency keys and the per-CRM state.

What every connector shares lives here, beside :class:`Record`:

- times: :func:`utc`, :func:`whole_second`, :func:`iso_utc`, :func:`second_window` (the window
  of an API that filters at whole seconds), :func:`parse_time` and :func:`read_time` (a record's
  time, or a one-line :class:`~leadscoring.crm.http.CrmError`);
- the window's records: :func:`latest_by_lead` (each lead once, in (modified_at, lead_id) order);
- ``crm.options``: :func:`check_option_keys`, :func:`text_option`, :func:`text_options`,
  :func:`text_list_option` (a bad key or value is a one-line
  :class:`~leadscoring.config.ConfigError` starting ``crm.options.KEY:``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, overload

from leadscoring.config import ConfigError
from leadscoring.crm.http import CrmError, FinalAnswer, JsonClient


@dataclass(frozen=True)
class PushRequest:
    """One write of one lead's score fields: ``method`` and ``path`` (joined to the CRM's base
    URL), a JSON ``body`` and any extra headers (never the credentials: the client adds them)."""

    method: str
    path: str
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    """One lead as the CRM shows it in a pull.

    - ``lead_id``: the CRM's id, as text.
    - ``modified_at``: the CRM's own modification time (timezone-aware UTC).
    - ``fields``: the raw values the status map reads (e.g. ``{"Status": "Closed", "IsConverted": False}``),
      by the names the configuration uses.
    - ``deleted``: the record is deleted, merged or archived in the CRM (it still counts).
    - ``outcome_at``: when the outcome happened, if the CRM says (e.g. Salesforce ``ConvertedDate``).
    - ``gone``: the CRM no longer has the lead at all (it answers 404 for it), so nothing but
      that is known: no fields, and ``modified_at`` the time the pull asked (its ``until``).
      The pull records such a lead deleted with its last known outcome and status when the
      outcome history knows it, and skips it otherwise (:func:`gone_record`).
    """

    lead_id: str
    modified_at: datetime
    fields: Mapping[str, Any]
    deleted: bool = False
    outcome_at: datetime | None = None
    gone: bool = False


def gone_record(lead_id: str, asked_at: datetime) -> Record:
    """The record of a lead the CRM no longer has (see :attr:`Record.gone`), asked for at ``asked_at``."""
    return Record(lead_id, asked_at, {}, deleted=True, gone=True)


class Connector(Protocol):
    """One CRM's API. ``kind`` is its ``crm.kind`` in the configuration; ``final_answer``
    (:data:`~leadscoring.crm.http.FinalAnswer`, or None) tells the error answers of this CRM
    that no retry can help (a spent daily request limit): a pull or check stops at once, and a
    push stops sending (the leads not sent are sent by the next push)."""

    kind: str
    final_answer: FinalAnswer | None

    def push_request(self, lead_id: str, values: Mapping[str, Any]) -> PushRequest:
        """The request that writes ``values`` (CRM field name -> value) to lead ``lead_id``."""
        ...

    def pull(
        self, client: JsonClient, since: datetime, until: datetime, known_ids: Collection[str] | None = None
    ) -> Iterator[Record]:
        """Every lead modified in ``[since, until]`` (both inclusive), deleted and archived ones
        included, each at most once, in ascending (modified_at, lead_id) order. Pages through
        the whole window with the CRM's own paging (and keyset where the CRM caps a query).
        ``known_ids``: the leads this project scored (from the score history), for CRMs that
        cannot filter by modification time and are polled lead by lead; others ignore it."""
        ...

    def read_back(self, client: JsonClient, lead_id: str, names: list[str]) -> dict[str, Any]:
        """The current values of fields ``names`` of one lead (``crm check`` verifies a push landed)."""
        ...

    def status_values(self, client: JsonClient) -> dict[str, list[str]] | None:
        """Field name -> every value the CRM allows for it, where its API lists them (``crm check``
        compares the status map with them); None when it offers no such list."""
        ...

    def default_status_map(self) -> dict[str, list[dict[str, Any]]]:
        """The usual status map for this CRM: outcome (``converted``/``lost``/``open``) -> rules,
        each rule a ``{field: value or [values]}`` that matches when all its fields match."""
        ...


# -- times ------------------------------------------------------------------------------------

ONE_SECOND = timedelta(seconds=1)
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")
#: Epoch values this large are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
_EPOCH_MS = 1e11


def utc(when: datetime) -> datetime:
    """``when`` in UTC (a naive time is taken as UTC)."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def whole_second(when: datetime, *, up: bool = False) -> datetime:
    """``when`` in UTC cut to the second, or rounded up to the next whole second (``up``)."""
    when = utc(when)
    whole = when.replace(microsecond=0)
    return whole + ONE_SECOND if up and whole < when else whole


def iso_utc(when: datetime, *, up: bool = False) -> str:
    """``when`` as ISO 8601 UTC with ``Z`` in whole seconds (``2026-03-02T09:00:00Z``), rounded
    down, or up (``up``)."""
    return whole_second(when, up=up).strftime("%Y-%m-%dT%H:%M:%SZ")


def second_window(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """The inclusive window ``[since, until]`` for an API that filters and shows times to the
    second, as the half-open ``[low, high)``: ``low`` is ``since`` cut to the second, ``high`` one
    second after ``until`` cut to the second. Every record whose shown time falls within the
    window to the second is asked for."""
    return whole_second(since), whole_second(until) + ONE_SECOND


def parse_time(value: Any) -> datetime | None:
    """A time from a CRM record: ISO 8601 (naive = UTC; a date alone is midnight UTC) or epoch
    seconds or milliseconds (a number or digits); timezone-aware UTC, or None when it is none
    of these."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return None
        seconds = value / 1000 if abs(value) >= _EPOCH_MS else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            return utc(datetime.fromisoformat(value.strip()))
        except ValueError:
            return None
    return None


def read_time(value: Any, where: str, field: str) -> datetime:
    """A time a record must carry (:func:`parse_time`); anything else is a one-line
    :class:`CrmError` ``"<where>: <field> is <value>, not a time (...)"``, ``where`` naming the
    CRM and the lead (e.g. ``"Odoo: lead 7"``)."""
    when = parse_time(value)
    if when is None:
        raise CrmError(f"{where}: {field} is {_shown(value)}, not a time (ISO 8601 or epoch seconds/milliseconds)")
    return when


def json_object(value: Any, where: str) -> Mapping[str, Any]:
    """``value`` when the CRM answered a JSON object there, else a one-line :class:`CrmError`
    naming ``where`` and what came instead (an answer of another API version, a proxy's page)."""
    if not isinstance(value, Mapping):
        raise CrmError(f"{where}: expected a JSON object, got {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- the window's records ---------------------------------------------------------------------


def latest_by_lead(records: Iterable[Record]) -> list[Record]:
    """Each lead once: its record with the greatest ``modified_at`` (of equal ones, the one read
    last, e.g. the archived copy read after the live one), sorted by (modified_at, lead_id)."""
    latest: dict[str, Record] = {}
    for record in records:
        seen = latest.get(record.lead_id)
        if seen is None or record.modified_at >= seen.modified_at:
            latest[record.lead_id] = record
    return sorted(latest.values(), key=lambda r: (r.modified_at, r.lead_id))


# -- crm.options ------------------------------------------------------------------------------


def check_option_keys(kind: str, options: Mapping[str, Any], known: Sequence[str]) -> None:
    """A ``crm.options`` key the ``kind`` connector does not read is a one-line
    :class:`ConfigError` naming it (the first in sorted order) and the keys it reads."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        use = f"known: {', '.join(known)}" if known else "it takes none"
        raise ConfigError(f"crm.options.{unknown[0]}: unknown option for {kind}; {use}")


def _bad_option(key: str, what: str, value: Any) -> ConfigError:
    return ConfigError(f"crm.options.{key}: expected {what}, got {_shown(value)}")


@overload
def text_option(options: Mapping[str, Any], key: str, default: str, pattern: str, what: str) -> str: ...
@overload
def text_option(options: Mapping[str, Any], key: str, default: None, pattern: str, what: str) -> str | None: ...
def text_option(options: Mapping[str, Any], key: str, default: str | None, pattern: str, what: str) -> str | None:
    """``options[key]`` (``default`` when absent): text that ``pattern`` matches in full, or
    None when absent with no default; anything else is a one-line :class:`ConfigError`
    ``"crm.options.KEY: expected <what>, got <value>"``."""
    value = options.get(key, default)
    if value is None and default is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        raise _bad_option(key, what, value)
    return value


def text_options(kind: str, options: Mapping[str, Any], spec: Mapping[str, tuple[str, str | None, str]]) -> dict[str, str | None]:
    """Every option of a connector whose options are all text: ``spec`` is key -> (pattern,
    default or None, what a good value is); unknown keys and bad values are one-line
    :class:`ConfigError` (:func:`check_option_keys`, :func:`text_option`)."""
    check_option_keys(kind, options, tuple(spec))
    return {key: text_option(options, key, default, pattern, what) for key, (pattern, default, what) in spec.items()}


def text_list_option(
    options: Mapping[str, Any],
    key: str,
    default: list[str],
    pattern: str,
    what: str,
    *,
    non_empty: bool = False,
    distinct: bool = False,
) -> list[str]:
    """``options[key]`` (``default`` when absent): a list of texts that ``pattern`` matches in
    full (``non_empty``: at least one; ``distinct``: no repeats); anything else is a one-line
    :class:`ConfigError` as in :func:`text_option`."""
    value = options.get(key, default)
    if (
        not isinstance(value, list)
        or (non_empty and not value)
        or not all(isinstance(v, str) and re.fullmatch(pattern, v) for v in value)
        or (distinct and len(set(value)) != len(value))
    ):
        raise _bad_option(key, what, value)
    return list(value)
