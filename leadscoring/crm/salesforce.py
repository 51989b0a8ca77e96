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

What a pull sees, and what it cannot:

- Leads modified, converted (``IsConverted``, ``ConvertedDate``), deleted or merged in the
  window: a merge keeps one Lead and deletes the others (``IsDeleted``, with ``MasterRecordId``
  naming the Lead kept, not read), and ``queryAll`` returns deleted Leads while they are in the
  recycle bin;
- not Leads purged from the recycle bin (emptied, or after its 15 days) or hard-deleted before a
  pull saw them deleted: they are gone from ``queryAll`` and simply stop appearing. Pull at
  least every few days to see every deletion.

Limits: a 403 ``REQUEST_LIMIT_EXCEEDED`` means the org's API request budget (24 hours,
rolling) is spent: any retry would fail too and spend nothing useful, so the answer is final
(:func:`request_limit`) and the pull or check stops at once with a one-line
:class:`~leadscoring.crm.http.CrmError` ("daily API request limit reached
(REQUEST_LIMIT_EXCEEDED); not retried"). 5xx, 429 and connection failures are retried by
:class:`~leadscoring.crm.http.JsonClient`.

Default status map (:meth:`Salesforce.default_status_map`), rules tried in the order converted,
lost, open: converted = ``IsConverted`` true; lost = not converted and ``Status`` in
``lost_statuses``; open = any other Lead not converted.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from leadscoring.crm.connector import (
    PushRequest,
    Record,
    check_option_keys,
    iso_utc,
    json_object,
    latest_by_lead,
    parse_time,
    read_time,
    text_list_option,
    text_option,
)
from leadscoring.crm.http import JsonClient

DEFAULT_API_VERSION = "v60.0"
DEFAULT_LOST_STATUSES = ["Closed - Not Converted"]
BASE_FIELDS = ["Id", "Status", "IsConverted", "ConvertedDate", "IsDeleted", "SystemModstamp"]
STATUS_FIELDS = ["Status", "IsConverted"]  # the base fields a status map reads
BATCH_MIN, BATCH_MAX = 200, 2000  # Sforce-Query-Options batchSize bounds
LIMIT_CODE = "REQUEST_LIMIT_EXCEEDED"

_VERSION = r"v\d+\.\d+"
_FIELD = r"[A-Za-z][A-Za-z0-9_]*"  # an API name (custom ones end in __c): safe in SOQL
_NOT_BLANK = r"(?s).*\S.*"


def request_limit(resp: httpx.Response) -> str | None:
    """Why Salesforce's answer is final: ``REQUEST_LIMIT_EXCEEDED`` (403), the org's API
    request budget is spent, so retrying is useless; None for any other answer."""
    if LIMIT_CODE in resp.text:
        return f"daily API request limit reached ({LIMIT_CODE}); not retried"
    return None


class Salesforce:
    """Salesforce's REST API on the Lead object (``crm.kind: salesforce``); see the module docstring."""

    kind = "salesforce"
    final_answer = staticmethod(request_limit)  # a spent request budget stops at once (module docstring)

    def __init__(self, base_url: str, options: Mapping[str, Any], page_size: int) -> None:
        check_option_keys(self.kind, options, ("api_version", "lost_statuses", "fields"))
        version = text_option(
            options, "api_version", DEFAULT_API_VERSION, _VERSION, f"a REST API version such as {DEFAULT_API_VERSION!r}"
        )
        lost = text_list_option(
            options,
            "lost_statuses",
            DEFAULT_LOST_STATUSES,
            _NOT_BLANK,
            "a non-empty list of Lead Status values that mean lost",
            non_empty=True,
        )
        extra = text_list_option(
            options, "fields", [], _FIELD, "a list of Lead field API names (letters, digits, _), e.g. ['Lost_Reason__c']"
        )
        self.base_url = base_url
        self.api_version: str = version
        self.lost_statuses: list[str] = lost
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
        answer = client.request(
            "GET", self._lead_path(lead_id), params={"fields": ",".join(names)}, what=f"lead {lead_id}", final=self.final_answer
        )
        answer = answer or {}
        return {name: answer.get(name) for name in names}

    def status_values(self, client: JsonClient) -> dict[str, list[str]]:
        """Every picklist field of Lead (``Status`` among them) -> its values."""
        answer = client.request("GET", f"{self.root}/sobjects/Lead/describe", what="Lead describe", final=self.final_answer) or {}
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
            f"SELECT {fields} FROM Lead WHERE SystemModstamp >= {iso_utc(since)} "
            f"AND SystemModstamp <= {iso_utc(until, up=True)} ORDER BY SystemModstamp, Id"
        )

    def pull(
        self, client: JsonClient, since: datetime, until: datetime, known_ids: Collection[str] | None = None
    ) -> Iterator[Record]:
        """Every Lead modified, converted, deleted or merged in ``[since, until]``, each once,
        in ascending (modified_at, lead_id) order (``known_ids`` is not needed)."""
        yield from latest_by_lead(self._window(client, since, until))

    def _window(self, client: JsonClient, since: datetime, until: datetime) -> Iterator[Record]:
        """The query's records inside the exact window, following ``nextRecordsUrl``."""
        what = f"Leads modified {since.isoformat()} to {until.isoformat()}"
        headers = {"Sforce-Query-Options": f"batchSize={self.batch_size}"}
        path = f"{self.root}/queryAll"
        params: dict[str, str] | None = {"q": self.soql(since, until)}
        while True:
            answer = client.request("GET", path, params=params, headers=headers, what=what, final=self.final_answer) or {}
            for item in json_object(answer, f"Salesforce: {what}").get("records") or []:
                record = _record(item, self.extra_fields)
                if since <= record.modified_at <= until:
                    yield record
            following = answer.get("nextRecordsUrl")
            if answer.get("done", True) or not following:
                return
            path, params = following, None


def _record(item: Mapping[str, Any], extra_fields: list[str]) -> Record:
    item = json_object(item, "Salesforce: a lead record")
    lead_id = str(item.get("Id"))
    modified_at = read_time(item.get("SystemModstamp"), f"Salesforce: lead {lead_id}", "SystemModstamp")
    converted = item.get("IsConverted") is True
    outcome_at = parse_time(item.get("ConvertedDate")) if converted else None
    return Record(
        lead_id=lead_id,
        modified_at=modified_at,
        fields={name: item.get(name) for name in [*STATUS_FIELDS, *extra_fields]},
        deleted=item.get("IsDeleted") is True,
        outcome_at=outcome_at,
    )
