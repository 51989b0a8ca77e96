"""Microsoft Dynamics 365 (Dataverse Web API): push scores to leads, pull their status changes.

- Pull: ``GET /api/data/{v}/leads`` with ``$select`` (the id, ``statecode``, ``statuscode``,
  ``modifiedon``), ``$filter`` on ``modifiedon`` over the window, ``$orderby=modifiedon asc,
  leadid asc`` and ``Prefer: odata.maxpagesize=N`` (Dataverse caps a page at 5,000 rows and has
  no ``$skip``), following ``@odata.nextLink`` (a paging cookie) until it is absent. Leads that
  share one ``modifiedon`` are yielded in text order of their id (the server orders GUIDs its
  own way, not as text).
- Window: ``modifiedon ge <since> and modifiedon lt <until + 1 s>``, both cut to the second,
  so every lead whose shown ``modifiedon`` falls within ``[since, until]`` to the second is seen.
- What a pull sees: every existing lead modified in the window, open, qualified (``statecode``
  1) or disqualified (2): qualifying or disqualifying a lead keeps it. A lead **merged** into
  another is deactivated, not deleted: it comes as a disqualified lead (``statecode`` 2, lost by
  the default map) with its own id; the pull does not read the ``merged``/``masterid`` columns
  that tell it apart, so map its ``statuscode`` otherwise in ``crm.status_map`` if that matters.
- What a pull cannot see: **deleted leads**. Dataverse queries return only existing rows; a
  deleted lead just stops appearing. Seeing deletions needs change tracking on the table
  (``Prefer: odata.track-changes`` and a stored delta link, which returns ``$deletedEntity``
  rows) or the audit log; neither fits a since/until window, so neither is used.
- Push: ``PATCH /api/data/{v}/leads({id})`` with the fields as the body and ``If-Match: *``,
  so a lead that does not exist is never created (404 instead of an upsert); 204 on success.
- ``statecode`` 0 open, 1 qualified (converted), 2 disqualified (lost); ``statuscode`` is the
  reason within the state (option values per organisation, listed by :meth:`status_values`).
- Limits: a 429 (service protection limits: requests, execution time and concurrency per user
  over five minutes, with ``Retry-After``) is waited out by the shared client; a
  ``Retry-After`` longer than its ``max_backoff`` stops the pull with a one-line error.

Options (``crm.options``): ``api_version`` (default ``v9.2``), ``entity`` (the table's logical
name, default ``lead``; its id column is ``<entity>id``) and ``entity_set`` (its Web API
collection, default ``leads``). ``crm.url`` is the organisation URL, e.g.
``https://org.crm.dynamics.com``; the token is an OAuth bearer token (``auth: bearer``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from leadscoring.crm.connector import PushRequest, Record, iso_utc, read_time, second_window, text_options
from leadscoring.crm.http import CrmError, JsonClient

NAME = "Dynamics 365"
MAX_PAGE = 5000  # Dataverse ignores a larger odata.maxpagesize
ODATA_HEADERS = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}
# option -> (pattern the value must match, default, what it is)
OPTIONS: dict[str, tuple[str, str, str]] = {
    "api_version": (r"v\d+\.\d+", "v9.2", "a Web API version such as 'v9.2'"),
    "entity": (r"[a-z][a-z0-9_]*", "lead", "a table's logical name such as 'lead'"),
    "entity_set": (r"[A-Za-z_][A-Za-z0-9_]*", "leads", "an entity set name such as 'leads'"),
}


class Dynamics:
    """The Dataverse Web API of one Dynamics 365 organisation (``crm.kind: dynamics``)."""

    kind = "dynamics"
    final_answer = None  # HTTP's usual rules: 429 and 5xx retried, other 4xx final

    def __init__(self, base_url: str, options: Mapping[str, Any], page_size: int) -> None:
        values = text_options(self.kind, options, OPTIONS)
        self.base_url = base_url.rstrip("/")
        self.api_version, self.entity, self.entity_set = (str(values[key]) for key in ("api_version", "entity", "entity_set"))
        self.id_field = f"{self.entity}id"
        self.page_size = min(page_size, MAX_PAGE)
        self.root = f"/api/data/{self.api_version}"

    # -- push / read back ---------------------------------------------------------------

    def _record_path(self, lead_id: str) -> str:
        return f"{self.root}/{self.entity_set}({quote(str(lead_id), safe='')})"

    def push_request(self, lead_id: str, values: Mapping[str, Any]) -> PushRequest:
        """``PATCH`` the lead's columns; ``If-Match: *`` makes it an update only (never an upsert)."""
        return PushRequest("PATCH", self._record_path(lead_id), dict(values), {**ODATA_HEADERS, "If-Match": "*"})

    def read_back(self, client: JsonClient, lead_id: str, names: list[str]) -> dict[str, Any]:
        row = client.request(
            "GET",
            f"{self._record_path(lead_id)}?{_query({'$select': ','.join(names)})}",
            headers=ODATA_HEADERS,
            what=f"lead {lead_id}",
        )
        if not isinstance(row, dict):
            raise CrmError(f"{NAME}: lead {lead_id}: the answer is not a record")
        return {name: row.get(name) for name in names}

    # -- pull ---------------------------------------------------------------------------

    def pull(
        self, client: JsonClient, since: datetime, until: datetime, known_ids: Collection[str] | None = None
    ) -> Iterator[Record]:
        """Every lead whose ``modifiedon`` is in ``[since, until]`` (to the second), ascending
        (modified_at, lead_id). Deleted leads are not seen (see the module docstring)."""
        low, high = second_window(since, until)
        query = _query(
            {
                "$select": f"{self.id_field},statecode,statuscode,modifiedon",
                "$filter": f"modifiedon ge {iso_utc(low)} and modifiedon lt {iso_utc(high)}",
                "$orderby": f"modifiedon asc,{self.id_field} asc",
            }
        )
        headers = {**ODATA_HEADERS, "Prefer": f"odata.maxpagesize={self.page_size}"}
        what = f"{self.entity_set} modified {iso_utc(low)} to {iso_utc(until)}"
        yield from _by_time_then_id(self._rows(client, f"{self.root}/{self.entity_set}?{query}", headers, what))

    def _rows(self, client: JsonClient, path: str, headers: dict[str, str], what: str) -> Iterator[Record]:
        seen: set[str] = set()
        used: set[str] = set()
        next_path: str | None = path
        while next_path:
            if next_path in used:
                raise CrmError(f"{NAME}: {what}: the same @odata.nextLink came back twice")
            used.add(next_path)
            page = client.request("GET", next_path, headers=headers, what=what)
            if not isinstance(page, dict) or not isinstance(page.get("value"), list):
                raise CrmError(f"{NAME}: {what}: the answer has no 'value' list")
            for row in page["value"]:
                record = self._record(row)
                if record.lead_id not in seen:
                    seen.add(record.lead_id)
                    yield record
            next_path = page.get("@odata.nextLink")

    def _record(self, row: Any) -> Record:
        lead_id = row.get(self.id_field) if isinstance(row, dict) else None
        if not lead_id:
            raise CrmError(f"{NAME}: a row of {self.entity_set} has no {self.id_field}")
        return Record(
            lead_id=str(lead_id),
            modified_at=read_time(row.get("modifiedon"), f"{NAME}: lead {lead_id}", "modifiedon"),
            fields={"statecode": row.get("statecode"), "statuscode": row.get("statuscode")},
        )

    # -- status values --------------------------------------------------------------------

    def status_values(self, client: JsonClient) -> dict[str, list[str]] | None:
        """The option values (as text) of ``statecode`` and ``statuscode``, from the table's metadata."""
        found: dict[str, list[str]] = {}
        for column, metadata in (("statecode", "StateAttributeMetadata"), ("statuscode", "StatusAttributeMetadata")):
            path = (
                f"{self.root}/EntityDefinitions(LogicalName='{self.entity}')/Attributes(LogicalName='{column}')"
                f"/Microsoft.Dynamics.CRM.{metadata}?{_query({'$select': 'LogicalName', '$expand': 'OptionSet($select=Options)'})}"
            )
            answer = client.request("GET", path, headers=ODATA_HEADERS, what=f"{column} options")
            option_set = answer.get("OptionSet") if isinstance(answer, dict) else None
            options = option_set.get("Options") if isinstance(option_set, dict) else None
            if not isinstance(options, list):
                raise CrmError(f"{NAME}: {column} options: the answer has no OptionSet.Options list")
            found[column] = [str(option["Value"]) for option in options if isinstance(option, dict) and "Value" in option]
        return found

    def default_status_map(self) -> dict[str, list[dict[str, Any]]]:
        """``statecode`` 1 (qualified) converted, 2 (disqualified) lost, 0 open."""
        return {"converted": [{"statecode": 1}], "lost": [{"statecode": 2}], "open": [{"statecode": 0}]}


def _by_time_then_id(records: Iterable[Record]) -> Iterator[Record]:
    """Records in server order (``modified_at`` ascending), each run of equal ``modified_at``
    sorted by ``lead_id`` as text; only one run is held at a time."""
    run: list[Record] = []
    for record in records:
        if run and record.modified_at != run[0].modified_at:
            yield from sorted(run, key=lambda r: r.lead_id)
            run = []
        run.append(record)
    yield from sorted(run, key=lambda r: r.lead_id)


def _query(params: Mapping[str, str]) -> str:
    """An OData query string as the Dataverse documentation writes it (``$`` kept, spaces as ``%20``)."""
    return "&".join(f"{key}={quote(value, safe=',:()=$')}" for key, value in params.items())
