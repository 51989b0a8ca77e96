"""Salesforce (REST API): score fields written to a Lead, and the Leads changed in a time
window read back with their status, conversion and deletion.

``crm.url`` is the org's instance URL (e.g. ``https://acme.my.salesforce.com``). Options
(``crm.options``):

- ``api_version``: the REST API version, ``v60.0`` by default.
- ``lost_statuses``: the Lead ``Status`` values that mean lost, ``["Closed - Not Converted"]``
  by default (the default status map's ``lost`` rule).
- ``fields``: extra Lead fields to read in a pull (e.g. a custom ``Lost_Reason__c``) for the
  status map.

Requests:

- push: ``PATCH /services/data/{v}/sobjects/Lead/{id}`` with ``{field: value}`` (204, empty).
- pull: ``GET /services/data/{v}/queryAll?q=SELECT Id, Status, IsConverted, ConvertedDate,
  IsDeleted, SystemModstamp FROM Lead WHERE SystemModstamp >= since AND SystemModstamp <= until
  ORDER BY SystemModstamp, Id``, then each ``nextRecordsUrl`` until ``done``. ``queryAll``
  includes the deleted and merged Leads still in the recycle bin (``IsDeleted`` true:
  ``deleted=True``). The query asks whole seconds (SOQL datetime literals); records outside the
  exact window are dropped, and the window's records are sorted by (``SystemModstamp``, Id)
  here, so the order never depends on how Salesforce sorts ids. ``page_size`` becomes the
  ``Sforce-Query-Options: batchSize`` header (Salesforce accepts 200 to 2,000 and may send fewer).
  ``outcome_at`` is ``ConvertedDate`` (a date: midnight UTC) when ``IsConverted``.
- read back: ``GET /services/data/{v}/sobjects/Lead/{id}?fields=a,b``.
- status values: ``GET /services/data/{v}/sobjects/Lead/describe``: every picklist field's
  ``picklistValues[].value`` (``Status`` among them), inactive values included (old records
  may still carry them).

Limits: a 403 ``REQUEST_LIMIT_EXCEEDED`` means the org's API request budget (24 hours,
rolling) is spent: any retry would fail too and spend nothing useful, so the pull or check
stops at once with a one-line :class:`~leadscoring.crm.http.CrmError` ("daily API request limit
reached; not retried"). 5xx, 429 and connection failures are retried by
:class:`~leadscoring.crm.http.JsonClient`.

Default status map (:meth:`Salesforce.default_status_map`), rules tried in the order converted,
lost, open: converted = ``IsConverted`` true; lost = not converted and ``Status`` in
``lost_statuses``; open = any other Lead not converted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

from leadscoring.config import ConfigError
from leadscoring.crm.connector import PushRequest, Record
from leadscoring.crm.http import CrmError, JsonClient

DEFAULT_API_VERSION = "v60.0"
DEFAULT_LOST_STATUSES = ["Closed - Not Converted"]
BASE_FIELDS = ["Id", "Status", "IsConverted", "ConvertedDate", "IsDeleted", "SystemModstamp"]
STATUS_FIELDS = ["Status", "IsConverted"]  # the base fields a status map reads
BATCH_MIN, BATCH_MAX = 200, 2000  # Sforce-Query-Options batchSize bounds
LIMIT_CODE = "REQUEST_LIMIT_EXCEEDED"

_VERSION = re.compile(r"v\d+\.\d+")
_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # an API name (custom ones end in __c): safe in SOQL


class Salesforce:
    """Salesforce's REST API on the Lead object (``crm.kind: salesforce``); see the module docstring."""

    kind = "salesforce"

    def __init__(self, base_url: str, options: Mapping[str, Any], page_size: int) -> None:
        unknown = sorted(set(options) - {"api_version", "lost_statuses", "fields"})
        if unknown:
            raise ConfigError(f"crm.options.{unknown[0]}: not a Salesforce option; use api_version, lost_statuses or fields")
        version = options.get("api_version", DEFAULT_API_VERSION)
        if not isinstance(version, str) or not _VERSION.fullmatch(version):
            raise ConfigError(f"crm.options.api_version: {version!r} is not a REST API version such as {DEFAULT_API_VERSION!r}")
        lost = options.get("lost_statuses", DEFAULT_LOST_STATUSES)
        if not isinstance(lost, list) or not lost or not all(isinstance(s, str) and s.strip() for s in lost):
            raise ConfigError("crm.options.lost_statuses: a non-empty list of Lead Status values that mean lost")
        extra = options.get("fields", [])
        if not isinstance(extra, list) or not all(isinstance(f, str) and _FIELD.fullmatch(f) for f in extra):
            raise ConfigError("crm.options.fields: a list of Lead field API names (letters, digits, _), e.g. ['Lost_Reason__c']")
        self.base_url = base_url
        self.api_version: str = version
        self.lost_statuses: list[str] = list(lost)
        self.extra_fields: list[str] = [f for f in dict.fromkeys(extra) if f not in BASE_FIELDS]
        self.batch_size = max(BATCH_MIN, min(page_size, BATCH_MAX))
        self.root = f"/services/data/{version}"

    # -- push and check ---------------------------------------------------------------------

    def _lead_path(self, lead_id: str) -> str:
        return f"{self.root}/sobjects/Lead/{quote(str(lead_id), safe='')}"

    def push_request(self, lead_id: str, values: Mapping[str, Any]) -> PushRequest:
        """``PATCH /services/data/{v}/sobjects/Lead/{id}`` with ``{field: value}``."""
        return PushRequest("PATCH", self._lead_path(lead_id), dict(values))

    def read_back(self, client: JsonClient, lead_id: str, names: list[str]) -> dict[str, Any]:
        """The current values of fields ``names`` of one Lead."""
        answer = _request(client, "GET", self._lead_path(lead_id), params={"fields": ",".join(names)}, what=f"lead {lead_id}")
        answer = answer or {}
        return {name: answer.get(name) for name in names}

    def status_values(self, client: JsonClient) -> dict[str, list[str]]:
        """Every picklist field of Lead (``Status`` among them) -> its values."""
        answer = _request(client, "GET", f"{self.root}/sobjects/Lead/describe", what="Lead describe") or {}
        return {
            str(f["name"]): [str(v["value"]) for v in f.get("picklistValues") or []]
            for f in answer.get("fields", [])
            if f.get("type") in ("picklist", "multipicklist")
        }

    def default_status_map(self) -> dict[str, list[dict[str, Any]]]:
        """converted = IsConverted; lost = Status in ``lost_statuses``; open = the rest."""
        return {
            "converted": [{"IsConverted": True}],
            "lost": [{"IsConverted": False, "Status": list(self.lost_statuses)}],
            "open": [{"IsConverted": False}],
        }

    # -- pull -------------------------------------------------------------------------------

    def soql(self, since: datetime, until: datetime) -> str:
        """The pull's query: whole seconds around the window (SOQL datetime literals)."""
        fields = ", ".join([*BASE_FIELDS, *self.extra_fields])
        return (
            f"SELECT {fields} FROM Lead WHERE SystemModstamp >= {_soql_time(since, math.floor)} "
            f"AND SystemModstamp <= {_soql_time(until, math.ceil)} ORDER BY SystemModstamp, Id"
        )

    def pull(
        self, client: JsonClient, since: datetime, until: datetime, known_ids: Collection[str] | None = None
    ) -> Iterator[Record]:
        """Every Lead modified, converted, deleted or merged in ``[since, until]``, each once,
        in ascending (modified_at, lead_id) order (``known_ids`` is not needed)."""
        what = f"Leads modified {since.isoformat()} to {until.isoformat()}"
        headers = {"Sforce-Query-Options": f"batchSize={self.batch_size}"}
        answer = _request(client, "GET", f"{self.root}/queryAll", params={"q": self.soql(since, until)}, headers=headers, what=what)
        latest: dict[str, Record] = {}
        while True:
            answer = answer or {}
            for item in answer.get("records") or []:
                record = _record(item, self.extra_fields)
                if since <= record.modified_at <= until:
                    seen = latest.get(record.lead_id)
                    if seen is None or record.modified_at >= seen.modified_at:
                        latest[record.lead_id] = record
            following = answer.get("nextRecordsUrl")
            if answer.get("done", True) or not following:
                break
            answer = _request(client, "GET", following, headers=headers, what=what)
        yield from sorted(latest.values(), key=lambda r: (r.modified_at, r.lead_id))


def _request(client: JsonClient, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
    """``client.request``, where a spent API budget (403 ``REQUEST_LIMIT_EXCEEDED``) ends in one line."""
    try:
        return client.request(method, path, what=what, **kwargs)
    except CrmError as exc:
        if LIMIT_CODE in str(exc):
            raise CrmError(f"{client.name}: {what}: daily API request limit reached ({LIMIT_CODE}); not retried") from None
        raise


def _record(item: Mapping[str, Any], extra_fields: list[str]) -> Record:
    lead_id = str(item.get("Id"))
    modified_at = _parse_time(item.get("SystemModstamp"))
    if modified_at is None:
        raise CrmError(f"Salesforce: lead {lead_id}: field SystemModstamp: unreadable time {item.get('SystemModstamp')!r}")
    converted = item.get("IsConverted") is True
    outcome_at = _parse_time(item.get("ConvertedDate")) if converted else None
    return Record(
        lead_id=lead_id,
        modified_at=modified_at,
        fields={name: item.get(name) for name in [*STATUS_FIELDS, *extra_fields]},
        deleted=item.get("IsDeleted") is True,
        outcome_at=outcome_at,
    )


def _soql_time(when: datetime, rounding: Any) -> str:
    """``when`` as a SOQL datetime literal in UTC, rounded to a whole second (down or up)."""
    when = when.astimezone(UTC)
    seconds = rounding(when.timestamp()) if when.microsecond else int(when.timestamp())
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> datetime | None:
    """Salesforce's datetimes (``2024-01-15T10:30:00.000+0000``) and dates (``2024-01-15``,
    midnight UTC)."""
    if not value:
        return None
    text = str(value).strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
