"""Odoo (External JSON-2 API, Odoo 19+): push scores to CRM leads, pull their status changes.

- API: ``POST /json/2/<model>/<method>`` with a JSON object of the method's named arguments
  (plus ``ids`` and ``context``); the answer is the method's return value as JSON, errors come
  as 4xx/5xx with a JSON error object. The API key goes as ``Authorization: bearer <key>``
  (``crm.auth: bearer``). ``X-Odoo-Database`` names the database where one server hosts
  several (``crm.options.database``). Chosen over the older ``/jsonrpc`` ``execute_kw``
  because Odoo 19 documents JSON-2 as the external API and deprecates XML-RPC/JSON-RPC.
- Pull: ``crm.lead`` ``search_read`` with ``context={"active_test": False}`` (a lost lead is
  archived: ``active`` false; without it archived leads are hidden), the fields ``write_date``,
  ``active``, ``stage_id``, ``probability`` and ``date_closed``, and the window
  ``write_date >= since`` and ``write_date < until + 1 s`` (cut to the second; ``write_date``
  is naive UTC text ``YYYY-MM-DD HH:MM:SS``).
- Paging: a keyset on ``id`` inside the window (``id > last id``, ``order="id asc"``,
  ``limit=page_size``), not ``offset`` (rows shift when leads change during the pull) and not a
  keyset on (``write_date``, ``id``): Odoo stores ``write_date`` to the microsecond (the
  transaction's ``now()``) but the API shows it to the second, so ``write_date = <shown
  value>`` matches nothing and leads written within one second would be skipped. The window's
  leads are then sorted by (write date, id) and yielded once each.
- Won: a lead is won when its stage has ``is_won`` (the ``crm.stage`` ids are read once per
  pull). Record fields: ``won`` (bool), ``active`` (bool), ``stage`` (the stage's name) and
  ``probability``; an archived lead has ``deleted`` set; ``outcome_at`` is ``date_closed``.
- What a pull sees: every lead written in the window, archived ones included (a lost lead is
  archived: ``deleted=True``, ``active`` false). What it cannot see: leads deleted outright
  (``unlink``) are gone from the database, and so are the leads merged away by "Merge
  opportunities" (Odoo deletes them and keeps one, which comes as written); they simply stop
  appearing.
- Limits: a 429 or 5xx (from Odoo or a proxy in front of it) is retried by the shared client;
  a pull asks ``crm.page_size`` leads a request, plus one request for the won stages.
- Push: ``write`` with ``ids=[id]`` and ``vals`` (the field map); read back with ``read``.

Options (``crm.options``): ``model`` (default ``crm.lead``; another model must have the same
``stage_id``/``active``/``date_closed`` fields) and ``database`` (the ``X-Odoo-Database`` header).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from datetime import datetime
from typing import Any

from leadscoring.crm.connector import (
    PushRequest,
    Record,
    latest_by_lead,
    read_time,
    second_window,
    text_options,
    whole_second,
)
from leadscoring.crm.http import CrmError, JsonClient

NAME = "Odoo"
STAGE_MODEL = "crm.stage"
PULL_FIELDS = ["id", "write_date", "active", "stage_id", "probability", "date_closed"]
ODOO_TIME = "%Y-%m-%d %H:%M:%S"
ALL_RECORDS = {"active_test": False}  # archived (lost) leads too
# option -> (pattern the value must match, default or None, what it is)
OPTIONS: dict[str, tuple[str, str | None, str]] = {
    "model": (r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*", "crm.lead", "an Odoo model name such as 'crm.lead'"),
    "database": (r"[A-Za-z0-9][A-Za-z0-9_.-]*", None, "a database name"),
}


class Odoo:
    """One Odoo database through its JSON-2 API (``crm.kind: odoo``)."""

    kind = "odoo"
    final_answer = None  # HTTP's usual rules: 429 and 5xx retried, other 4xx final

    def __init__(self, base_url: str, options: Mapping[str, Any], page_size: int) -> None:
        values = text_options(self.kind, options, OPTIONS)
        self.base_url = base_url.rstrip("/")
        self.model = str(values["model"])
        self.database = values["database"]
        self.page_size = page_size
        self.headers = {"X-Odoo-Database": self.database} if self.database else {}

    def _call(self, client: JsonClient, model: str, method: str, body: Mapping[str, Any], what: str) -> Any:
        return client.request("POST", _path(model, method), json_body=dict(body), headers=self.headers, what=what)

    # -- push / read back ---------------------------------------------------------------

    def push_request(self, lead_id: str, values: Mapping[str, Any]) -> PushRequest:
        """``write`` on the one lead: ``{"ids": [id], "vals": {...}}`` (answers ``true``)."""
        body = {"ids": [_record_id(lead_id)], "vals": dict(values)}
        return PushRequest("POST", _path(self.model, "write"), body, dict(self.headers))

    def read_back(self, client: JsonClient, lead_id: str, names: list[str]) -> dict[str, Any]:
        body = {"ids": [_record_id(lead_id)], "fields": list(names), "context": ALL_RECORDS}
        rows = self._call(client, self.model, "read", body, f"lead {lead_id}")
        if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
            raise CrmError(f"{NAME}: lead {lead_id}: not found in {self.model}")
        return {name: rows[0].get(name) for name in names}

    # -- pull ---------------------------------------------------------------------------

    def pull(
        self, client: JsonClient, since: datetime, until: datetime, known_ids: Collection[str] | None = None
    ) -> Iterator[Record]:
        """Every lead (archived ones included) whose ``write_date`` is in ``[since, until]``
        (to the second), ascending (modified_at, lead_id)."""
        won_stages = self._won_stage_ids(client)
        low, high = (bound.strftime(ODOO_TIME) for bound in second_window(since, until))
        what = f"leads written {low} to {whole_second(until).strftime(ODOO_TIME)}"
        records: list[Record] = []
        last_id = 0
        while True:
            body = {
                "domain": [["write_date", ">=", low], ["write_date", "<", high], ["id", ">", last_id]],
                "fields": PULL_FIELDS,
                "order": "id asc",
                "limit": self.page_size,
                "context": ALL_RECORDS,
            }
            rows = self._call(client, self.model, "search_read", body, what)
            if not isinstance(rows, list):
                raise CrmError(f"{NAME}: {self.model}/search_read ({what}): the answer is not a list")
            previous = last_id
            for row in rows:
                records.append(_record(row, won_stages))
                last_id = max(last_id, int(row["id"]))
            if len(rows) < self.page_size:
                break
            if last_id <= previous:  # a full page that does not move the keyset would loop forever
                raise CrmError(f"{NAME}: {self.model}/search_read ({what}): the answer ignores the id > {previous} filter")
        yield from latest_by_lead(records)

    def _won_stage_ids(self, client: JsonClient) -> set[int]:
        body = {"domain": [["is_won", "=", True]], "fields": ["id"], "context": ALL_RECORDS}
        rows = self._call(client, STAGE_MODEL, "search_read", body, "won stages")
        if not isinstance(rows, list):
            raise CrmError(f"{NAME}: {STAGE_MODEL}/search_read (won stages): the answer is not a list")
        return {int(row["id"]) for row in rows if isinstance(row, dict) and "id" in row}

    # -- status values --------------------------------------------------------------------

    def status_values(self, client: JsonClient) -> dict[str, list[str]] | None:
        """The names of the CRM stages (``crm.stage``), for rules on ``stage``."""
        body = {"domain": [], "fields": ["name"], "order": "sequence asc, id asc", "context": ALL_RECORDS}
        rows = self._call(client, STAGE_MODEL, "search_read", body, "stages")
        if not isinstance(rows, list):
            raise CrmError(f"{NAME}: {STAGE_MODEL}/search_read (stages): the answer is not a list")
        return {"stage": [str(row["name"]) for row in rows if isinstance(row, dict) and row.get("name")]}

    def default_status_map(self) -> dict[str, list[dict[str, Any]]]:
        """Converted: the stage is won; lost: archived and not won; open: active and not won."""
        return {
            "converted": [{"won": True}],
            "lost": [{"won": False, "active": False}],
            "open": [{"won": False, "active": True}],
        }


def _path(model: str, method: str) -> str:
    return f"/json/2/{model}/{method}"


def _record_id(lead_id: str) -> int:
    """Odoo record ids are whole numbers."""
    text = str(lead_id).strip()
    if not text.isdigit():
        raise CrmError(f"{NAME}: lead {lead_id!r}: not an Odoo record id (a whole number)")
    return int(text)


def _record(row: Any, won_stages: set[int]) -> Record:
    if not isinstance(row, dict) or "id" not in row:
        raise CrmError(f"{NAME}: a lead in the answer has no id")
    lead_id = row["id"]
    stage = row.get("stage_id")  # a many2one reads as [id, name], or false
    stage_id, stage_name = (stage[0], stage[1]) if isinstance(stage, list) and len(stage) == 2 else (None, None)
    active = bool(row.get("active"))
    return Record(
        lead_id=str(lead_id),
        modified_at=read_time(row.get("write_date"), f"{NAME}: lead {lead_id}", "write_date"),
        fields={"won": stage_id in won_stages, "active": active, "stage": stage_name, "probability": row.get("probability")},
        deleted=not active,
        outcome_at=read_time(row["date_closed"], f"{NAME}: lead {lead_id}", "date_closed") if row.get("date_closed") else None,
    )
