"""Pipedrive (API v2): push scores to deals, pull their status changes.

- Credentials: an API token goes in the ``x-api-token`` header (``crm.auth: header``,
  ``crm.auth_header: x-api-token``); v2 takes no ``api_token`` in the URL. An OAuth access token
  goes as ``Authorization: Bearer`` (``crm.auth: bearer``). ``crm.url`` is the company URL,
  e.g. ``https://COMPANY.pipedrive.com``.
- Pull: ``GET /api/v2/deals`` and ``GET /api/v2/deals/archived`` (since July 2025 the first no
  longer returns archived deals), each with ``updated_since`` (inclusive), ``updated_until``
  (exclusive: given as ``until`` + 1 s, both cut to the second), ``sort_by=update_time``,
  ``sort_direction=asc``, ``limit`` (at most 500) and ``status=open,won,lost,deleted`` (without
  it deleted deals are left out; Pipedrive keeps a deleted deal for 30 days, after which it is
  gone for good and no pull sees it). Pages follow ``additional_data.next_cursor`` until it is
  null. The window's deals are then sorted by (update time, id) and yielded once each.
- Record fields: ``status`` (``open``/``won``/``lost``/``deleted``), ``is_archived``,
  ``is_deleted``; ``deleted`` is set for deleted and archived deals; ``outcome_at`` is
  ``won_time`` for a won deal and ``lost_time`` for a lost one.
- What a pull sees: open, won, lost, archived and deleted deals updated in the window. What it
  cannot see: a deal deleted more than 30 days before a pull (purged), and the deal merged away
  in a merge: Pipedrive removes it (its data goes to the deal kept, which comes as updated) and
  does not document that it stays listed as deleted, so it may simply stop appearing.
- Limits: every request spends tokens of the company's daily token budget (v2 list requests
  cost less than v1). A 429 is retried by the shared client (``Retry-After`` honoured); one
  for a spent daily budget (it resets the next day) fails the same way once the retries are
  used up, a one-line error.
- Push: ``PATCH /api/v2/deals/{id}``. Custom fields (keys are 40-character hashes) go in the
  v2 ``custom_fields`` object, other names (standard fields such as ``probability``) at the top
  level. Pipedrive refuses to edit archived deals, so a push to one fails for that deal.
- Default status map: won converted, lost lost, open open, and **deleted lost**: a deal
  deleted before it was won did not convert, and counting it open would leave it unresolved
  forever. A project where deletion means "duplicate" or "spam" can map ``deleted`` otherwise
  in ``crm.status_map``.

No options (``crm.options`` must be empty).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from leadscoring.crm.connector import PushRequest, Record, check_option_keys, iso_utc, latest_by_lead, read_time, second_window
from leadscoring.crm.http import CrmError, JsonClient

NAME = "Pipedrive"
MAX_PAGE = 500  # the v2 list endpoints' largest limit
STATUSES = ["open", "won", "lost", "deleted"]
CUSTOM_FIELD = re.compile(r"[0-9a-f]{40}")
DEAL_LISTS = ("/api/v2/deals", "/api/v2/deals/archived")


class Pipedrive:
    """The v2 API of one Pipedrive company (``crm.kind: pipedrive``); leads are deals."""

    kind = "pipedrive"
    final_answer = None  # HTTP's usual rules: 429 and 5xx retried, other 4xx final

    def __init__(self, base_url: str, options: Mapping[str, Any], page_size: int) -> None:
        check_option_keys(self.kind, options, ())
        self.base_url = base_url.rstrip("/")
        self.page_size = min(page_size, MAX_PAGE)

    # -- push / read back ---------------------------------------------------------------

    def push_request(self, lead_id: str, values: Mapping[str, Any]) -> PushRequest:
        """``PATCH /api/v2/deals/{id}``: custom fields in ``custom_fields``, standard ones at the top."""
        body: dict[str, Any] = {}
        custom = {name: value for name, value in values.items() if CUSTOM_FIELD.fullmatch(name)}
        if custom:
            body["custom_fields"] = custom
        body.update({name: value for name, value in values.items() if not CUSTOM_FIELD.fullmatch(name)})
        return PushRequest("PATCH", _deal_path(lead_id), body)

    def read_back(self, client: JsonClient, lead_id: str, names: list[str]) -> dict[str, Any]:
        answer = client.request("GET", _deal_path(lead_id), what=f"deal {lead_id}")
        deal = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(deal, dict):
            raise CrmError(f"{NAME}: deal {lead_id}: the answer has no 'data' object")
        custom = deal.get("custom_fields") or {}
        return {name: (custom.get(name) if CUSTOM_FIELD.fullmatch(name) else deal.get(name)) for name in names}

    # -- pull ---------------------------------------------------------------------------

    def pull(
        self, client: JsonClient, since: datetime, until: datetime, known_ids: Collection[str] | None = None
    ) -> Iterator[Record]:
        """Every deal (archived and deleted ones included) whose ``update_time`` is in
        ``[since, until]`` (to the second), ascending (modified_at, lead_id)."""
        low, high = second_window(since, until)
        params: dict[str, Any] = {
            "updated_since": iso_utc(low),
            "updated_until": iso_utc(high),
            "sort_by": "update_time",
            "sort_direction": "asc",
            "status": ",".join(STATUSES),
            "limit": self.page_size,
        }
        what = f"deals updated {iso_utc(low)} to {iso_utc(until)}"
        yield from latest_by_lead(
            _record(row, archived=path.endswith("/archived")) for path in DEAL_LISTS for row in _pages(client, path, params, what)
        )

    # -- status values --------------------------------------------------------------------

    def status_values(self, client: JsonClient) -> dict[str, list[str]] | None:
        """A deal's ``status`` is one of a fixed list: no request needed."""
        return {"status": list(STATUSES)}

    def default_status_map(self) -> dict[str, list[dict[str, Any]]]:
        """won converted; lost and deleted lost; open open (see the module docstring)."""
        return {"converted": [{"status": "won"}], "lost": [{"status": ["lost", "deleted"]}], "open": [{"status": "open"}]}


def _deal_path(lead_id: str) -> str:
    return f"/api/v2/deals/{quote(str(lead_id), safe='')}"


def _pages(client: JsonClient, path: str, params: Mapping[str, Any], what: str) -> Iterator[dict[str, Any]]:
    """The deals of every page of one list, following ``additional_data.next_cursor``."""
    cursor: str | None = None
    used: set[str] = set()
    while True:
        answer = client.request("GET", path, params={**params, **({"cursor": cursor} if cursor else {})}, what=what)
        rows = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(rows, list):
            raise CrmError(f"{NAME}: GET {path} ({what}): the answer has no 'data' list")
        yield from rows
        cursor = (answer.get("additional_data") or {}).get("next_cursor")
        if not cursor:
            return
        if cursor in used:
            raise CrmError(f"{NAME}: GET {path} ({what}): the same next_cursor came back twice")
        used.add(cursor)


def _record(row: Any, *, archived: bool) -> Record:
    deal_id = row.get("id") if isinstance(row, dict) else None
    if deal_id is None:
        raise CrmError(f"{NAME}: a deal in the answer has no id")
    status = row.get("status")
    is_deleted = bool(row.get("is_deleted")) or status == "deleted"
    is_archived = bool(row.get("is_archived")) or archived
    outcome = {"won": "won_time", "lost": "lost_time"}.get(str(status))
    return Record(
        lead_id=str(deal_id),
        modified_at=read_time(row.get("update_time"), f"{NAME}: deal {deal_id}", "update_time"),
        fields={"status": status, "is_archived": is_archived, "is_deleted": is_deleted},
        deleted=is_deleted or is_archived,
        outcome_at=read_time(row[outcome], f"{NAME}: deal {deal_id}", outcome) if outcome and row.get(outcome) else None,
    )
