"""HubSpot (CRM API v3): score fields written to a contact (or lead, or deal), and the records
changed in a time window read back with their status properties.

Options (``crm.options``):

- ``object``: ``contacts`` (default), ``leads`` or ``deals``.
- ``properties``: the status properties to read; by default ``lifecyclestage`` and
  ``hs_lead_status`` for contacts, ``hs_pipeline_stage`` for leads, ``dealstage`` for deals.

Requests:

- push: ``PATCH /crm/v3/objects/{object}/{id}`` with ``{"properties": {name: value}}``.
- pull: ``POST /crm/v3/objects/{object}/search`` filtered on the modification time
  (``lastmodifieddate`` for contacts, ``hs_lastmodifieddate`` otherwise) between ``since`` and
  ``until`` (epoch milliseconds, both inclusive). HubSpot allows one sort rule per search and
  answers HTTP 400 past the 10,000th result of one query, and many records share one
  modification time. So the window is read by keyset on ``hs_object_id``: every page is a
  fresh query sorted by ``hs_object_id`` ascending with ``hs_object_id > last id seen``
  (never the ``after`` offset). No query goes near the 10,000 cap, and a record that leaves
  the window while the pull runs (modified again) cannot shift the offsets and make the next
  page skip a record. The window's records are then sorted by (modification time, id).
- archived records: the search never returns them, so ``GET /crm/v3/objects/{object}?archived=true``
  is paged through (``after`` cursor) and those archived inside the window (``archivedAt``,
  else ``updatedAt``) come as ``deleted=True`` records with their last properties. HubSpot keeps
  archived records 90 days, and the list cannot be filtered: every pull pages through them all.
- read back: ``GET /crm/v3/objects/{object}/{id}?properties=a,b``.
- status values: ``GET /crm/v3/properties/{object}/{name}`` (``options[].value``); for the
  pipeline stage properties (``dealstage``, ``hs_pipeline_stage``), whose options live in the
  pipelines, ``GET /crm/v3/pipelines/{object}`` (every pipeline's ``stages[].id``).
- ``outcome_at``: a contact in lifecycle stage ``customer`` or ``evangelist`` carries
  ``hs_lifecyclestage_customer_date``; leads and deals carry none.

What a pull sees, and what it cannot:

- live records modified in the window, and records archived in the window (``deleted=True``);
- not records archived more than 90 days ago (HubSpot purges them), nor records deleted
  permanently (a GDPR delete): they are in neither list, and simply stop appearing;
- not the records merged away: a merge leaves one record (HubSpot may give it a new id), which
  comes as modified; the ids merged into it (its ``hs_merged_object_ids``, not read) are in
  neither list, so the pull never sees them end.

Rate limits: a 429 for HubSpot's per-second or per-ten-seconds limit (``policyName``
``SECONDLY`` or ``TEN_SECONDLY_ROLLING``, counted in the ``X-HubSpot-RateLimit-*`` headers;
the search endpoints allow five requests a second) is retried by
:class:`~leadscoring.crm.http.JsonClient`, which waits as long as ``Retry-After`` asks when
HubSpot sends it and backs off exponentially otherwise. A 429 for the spent daily limit
(``{"status": "error", "message": "You have reached your daily limit.", "errorType":
"RATE_LIMIT", "policyName": "DAILY", ...}``; the limit resets at midnight in the account's time
zone) is final (:func:`daily_limit`): the pull or check stops at once with a one-line
:class:`~leadscoring.crm.http.CrmError` ("daily API request limit reached (DAILY); not retried").

Default status map (:meth:`HubSpot.default_status_map`), rules tried in the order converted,
lost, open:

- contacts: converted = ``lifecyclestage`` ``customer`` or ``evangelist`` (a customer who
  recommends us is still a customer; ``opportunity`` is an open deal, not a sale);
  lost = ``hs_lead_status`` ``UNQUALIFIED``; open = every other default lifecycle stage.
  An archived contact keeps its last status (the pull sees ``deleted=True``).
- leads: converted = ``qualified-stage-id``, lost = ``unqualified-stage-id``, open = the
  other stages of the default lead pipeline.
- deals: converted = ``closedwon``, lost = ``closedlost``, open = the other stages of the
  default sales pipeline.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from leadscoring.crm.connector import (
    PushRequest,
    Record,
    check_option_keys,
    json_object,
    latest_by_lead,
    parse_time,
    read_time,
    text_list_option,
    text_option,
)
from leadscoring.crm.http import CrmError, JsonClient

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.hubapi.com"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# HubSpot's documented limits: results per search page, per list page, and per search query.
SEARCH_PAGE_MAX = 200
LIST_PAGE_MAX = 100
SEARCH_CAP = 10_000

OBJECTS = ("contacts", "leads", "deals")
DEFAULT_PROPERTIES: dict[str, list[str]] = {
    "contacts": ["lifecyclestage", "hs_lead_status"],
    "leads": ["hs_pipeline_stage"],
    "deals": ["dealstage"],
}
MODIFIED_PROPERTY = {"contacts": "lastmodifieddate", "leads": "hs_lastmodifieddate", "deals": "hs_lastmodifieddate"}
PIPELINE_PROPERTIES = frozenset({"dealstage", "hs_pipeline_stage"})
CUSTOMER_STAGES = ["customer", "evangelist"]
CUSTOMER_DATE = "hs_lifecyclestage_customer_date"
_TRIMMED = r"(?s)\S(?:.*\S)?"  # non-empty, no white space at either end

DEFAULT_STATUS_MAPS: dict[str, dict[str, list[dict[str, Any]]]] = {
    "contacts": {
        "converted": [{"lifecyclestage": CUSTOMER_STAGES}],
        "lost": [{"hs_lead_status": "UNQUALIFIED"}],
        "open": [
            {
                "lifecyclestage": [
                    "subscriber",
                    "lead",
                    "marketingqualifiedlead",
                    "salesqualifiedlead",
                    "opportunity",
                    "other",
                ]
            }
        ],
    },
    "leads": {
        "converted": [{"hs_pipeline_stage": "qualified-stage-id"}],
        "lost": [{"hs_pipeline_stage": "unqualified-stage-id"}],
        "open": [{"hs_pipeline_stage": ["new-stage-id", "attempting-stage-id", "connected-stage-id"]}],
    },
    "deals": {
        "converted": [{"dealstage": "closedwon"}],
        "lost": [{"dealstage": "closedlost"}],
        "open": [
            {
                "dealstage": [
                    "appointmentscheduled",
                    "qualifiedtobuy",
                    "presentationscheduled",
                    "decisionmakerboughtin",
                    "contractsent",
                ]
            }
        ],
    },
}


def daily_limit(resp: httpx.Response) -> str | None:
    """Why HubSpot's answer is final: a 429 whose JSON body says the daily limit is spent
    (``policyName`` ``DAILY``, or ``errorType`` ``RATE_LIMIT`` with a daily message); retrying
    is useless until the limit resets. None for any other answer (a per-second 429 is retried)."""
    if resp.status_code != 429:
        return None
    try:
        body = resp.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    policy = str(body.get("policyName") or "").upper()
    daily_message = body.get("errorType") == "RATE_LIMIT" and re.search(r"\bdaily\b", str(body.get("message") or ""), re.I)
    if "DAILY" in policy or daily_message:
        return f"daily API request limit reached ({policy or 'RATE_LIMIT'}); not retried"
    return None


class HubSpot:
    """HubSpot's CRM API v3 (``crm.kind: hubspot``); see the module docstring."""

    kind = "hubspot"
    final_answer = staticmethod(daily_limit)  # a spent daily limit stops at once (module docstring)

    def __init__(self, base_url: str, options: Mapping[str, Any], page_size: int) -> None:
        check_option_keys(self.kind, options, ("object", "properties"))
        obj = text_option(
            options, "object", "contacts", "|".join(OBJECTS), f"a HubSpot object this connector reads, one of {list(OBJECTS)}"
        )
        self.base_url = base_url or DEFAULT_BASE_URL
        self.object: str = obj
        self.properties = text_list_option(
            options,
            "properties",
            DEFAULT_PROPERTIES[obj],
            _TRIMMED,
            "a non-empty list of distinct HubSpot property names",
            non_empty=True,
            distinct=True,
        )
        self.modified_property = MODIFIED_PROPERTY[obj]
        self.search_limit = max(1, min(page_size, SEARCH_PAGE_MAX))
        self.list_limit = max(1, min(page_size, LIST_PAGE_MAX))

    # -- push and check ---------------------------------------------------------------------

    def _object_path(self, lead_id: str) -> str:
        return f"/crm/v3/objects/{self.object}/{quote(str(lead_id), safe='')}"

    def push_request(self, lead_id: str, values: Mapping[str, Any]) -> PushRequest:
        """``PATCH /crm/v3/objects/{object}/{id}`` with ``{"properties": values}``."""
        return PushRequest("PATCH", self._object_path(lead_id), {"properties": dict(values)})

    def read_back(self, client: JsonClient, lead_id: str, names: list[str]) -> dict[str, Any]:
        """The current values of properties ``names`` of one record."""
        answer = client.request(
            "GET",
            self._object_path(lead_id),
            params={"properties": ",".join(names)},
            what=f"{self.object} {lead_id}",
            final=self.final_answer,
        )
        props = (answer or {}).get("properties") or {}
        return {name: props.get(name) for name in names}

    def status_values(self, client: JsonClient) -> dict[str, list[str]]:
        """Each status property's allowed values (pipeline stages from the pipelines API)."""
        values: dict[str, list[str]] = {}
        stages: list[str] | None = None
        for name in self.properties:
            if name in PIPELINE_PROPERTIES:
                if stages is None:
                    answer = client.request(
                        "GET", f"/crm/v3/pipelines/{self.object}", what=f"{self.object} pipelines", final=self.final_answer
                    )
                    stages = [
                        str(stage["id"]) for pipeline in (answer or {}).get("results", []) for stage in pipeline.get("stages", [])
                    ]
                values[name] = list(stages)
            else:
                path = f"/crm/v3/properties/{self.object}/{quote(name, safe='')}"
                answer = client.request("GET", path, what=f"property {name}", final=self.final_answer)
                values[name] = [str(option["value"]) for option in (answer or {}).get("options", [])]
        return values

    def default_status_map(self) -> dict[str, list[dict[str, Any]]]:
        """The object's usual status map (module docstring); rules on properties not read
        (``crm.options.properties``) are left out."""
        usual = DEFAULT_STATUS_MAPS[self.object]
        return {
            outcome: [dict(rule) for rule in rules if set(rule) <= set(self.properties)]
            for outcome, rules in usual.items()
            if any(set(rule) <= set(self.properties) for rule in rules)
        }

    # -- pull -------------------------------------------------------------------------------

    def pull(
        self, client: JsonClient, since: datetime, until: datetime, known_ids: Collection[str] | None = None
    ) -> Iterator[Record]:
        """Every record modified or archived in ``[since, until]``, each once, in ascending
        (modified_at, lead_id) order (``known_ids`` is not needed: HubSpot filters by time)."""
        yield from latest_by_lead([*self._search(client, since, until), *self._archived(client, since, until)])

    def _read_properties(self) -> list[str]:
        extra = [self.modified_property, "hs_object_id"] + ([CUSTOMER_DATE] if self.object == "contacts" else [])
        return list(dict.fromkeys([*self.properties, *extra]))

    def _search(self, client: JsonClient, since: datetime, until: datetime) -> Iterator[Record]:
        """The window's live records, one keyset query per page (module docstring)."""
        window = [
            {"propertyName": self.modified_property, "operator": "GTE", "value": str(_ceil_ms(since))},
            {"propertyName": self.modified_property, "operator": "LTE", "value": str(_floor_ms(until))},
        ]
        path = f"/crm/v3/objects/{self.object}/search"
        what = f"{self.object} modified {since.isoformat()} to {until.isoformat()}"
        last_id: int | None = None
        while True:
            keyset = [] if last_id is None else [{"propertyName": "hs_object_id", "operator": "GT", "value": str(last_id)}]
            body = {
                "filterGroups": [{"filters": window + keyset}],
                "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                "properties": self._read_properties(),
                "limit": self.search_limit,
            }
            answer = client.request("POST", path, json_body=body, what=what, final=self.final_answer) or {}
            answer = json_object(answer, f"{client.name}: search for {what}")
            results = answer.get("results") or []
            for item in results:
                lead_id = _object_id(item, client.name)
                if last_id is not None and lead_id <= last_id:
                    raise CrmError(f"{client.name}: search for {what} answered id {lead_id} after {last_id}: not sorted by id")
                last_id = lead_id
                record = self._record(item, deleted=False)
                if since <= record.modified_at <= until:
                    yield record
                else:  # modified again since the search index was read: the next pull has it
                    log.debug("%s: %s %s modified at %s, outside the window", client.name, self.object, lead_id, record.modified_at)
            if not results or not (answer.get("paging") or {}).get("next"):
                return

    def _archived(self, client: JsonClient, since: datetime, until: datetime) -> Iterator[Record]:
        """The records archived in the window (the search never returns archived records)."""
        params: dict[str, Any] = {
            "archived": "true",
            "limit": self.list_limit,
            "properties": ",".join(self._read_properties()),
        }
        path = f"/crm/v3/objects/{self.object}"
        while True:
            answer = client.request("GET", path, params=params, what=f"archived {self.object}", final=self.final_answer) or {}
            answer = json_object(answer, f"{client.name}: archived {self.object}")
            for item in answer.get("results") or []:
                record = self._record(item, deleted=True)
                if since <= record.modified_at <= until:
                    yield record
            after = ((answer.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return
            params = {**params, "after": after}

    def _record(self, item: Mapping[str, Any], *, deleted: bool) -> Record:
        item = json_object(item, f"HubSpot: a {self.object} record")
        props = json_object(item.get("properties") or {}, f"HubSpot: {self.object} {item.get('id')}'s properties")
        stamp = (item.get("archivedAt") or item.get("updatedAt")) if deleted else None
        stamp = stamp or props.get(self.modified_property) or item.get("updatedAt")
        lead_id = str(item.get("id"))
        modified_at = read_time(stamp, f"HubSpot: {self.object} {lead_id}", self.modified_property)
        outcome_at = None
        if self.object == "contacts" and props.get("lifecyclestage") in CUSTOMER_STAGES:
            outcome_at = parse_time(props.get(CUSTOMER_DATE))
        return Record(
            lead_id=lead_id,
            modified_at=modified_at,
            fields={name: props.get(name) for name in self.properties},
            deleted=deleted,
            outcome_at=outcome_at,
        )


def _object_id(item: Mapping[str, Any], name: str) -> int:
    try:
        return int(str(item["id"]))
    except (KeyError, ValueError, TypeError):
        raise CrmError(f"{name}: a search result without a numeric id: {str(item)[:120]}") from None


def _micros(when: datetime) -> int:
    return (when - EPOCH) // timedelta(microseconds=1)


def _ceil_ms(when: datetime) -> int:
    """The first whole millisecond at or after ``when`` (HubSpot stores milliseconds)."""
    return -(-_micros(when) // 1000)


def _floor_ms(when: datetime) -> int:
    """The last whole millisecond at or before ``when``."""
    return _micros(when) // 1000
