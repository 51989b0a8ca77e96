"""Microsoft Dynamics 365 (Dataverse Web API): push scores to leads, pull their status changes.

- Pull: ``GET /api/data/{v}/leads`` with ``$select`` (the id, ``statecode``, ``statuscode``,
  ``modifiedon``), ``$filter`` on ``modifiedon`` over the window, ``$orderby=modifiedon asc,
  leadid asc`` and ``Prefer: odata.maxpagesize=N`` (Dataverse caps a page at 5,000 rows and has
  no ``$skip``), following ``@odata.nextLink`` (a paging cookie) until it is absent. Leads that
  share one ``modifiedon`` are yielded in text order of their id (the server orders GUIDs its
  own way, not as text).
- Window: ``modifiedon ge <since> and modifiedon lt <until + 1 s>``, both cut to the second,
  so every lead whose shown ``modifiedon`` falls within ``[since, until]`` to the second is seen.
- What a pull cannot see: **deleted leads**. Dataverse queries return only existing rows; a
  deleted lead just stops appearing. Seeing deletions needs change tracking on the table
  (``Prefer: odata.track-changes`` and a stored delta link, which returns ``$deletedEntity``
  rows) or the audit log; neither fits a since/until window, so neither is used. Qualified and
  disqualified leads are not deleted: they stay, with ``statecode`` 1 or 2.
- Push: ``PATCH /api/data/{v}/leads({id})`` with the fields as the body and ``If-Match: *``,
  so a lead that does not exist is never created (404 instead of an upsert); 204 on success.
- ``statecode`` 0 open, 1 qualified (converted), 2 disqualified (lost); ``statuscode`` is the
  reason within the state (option values per organisation, listed by :meth:`status_values`).
- 429 (service protection limits, with ``Retry-After``) is waited out by the shared client.

Options (``crm.options``): ``api_version`` (default ``v9.2``), ``entity`` (the table's logical
name, default ``lead``; its id column is ``<entity>id``) and ``entity_set`` (its Web API
collection, default ``leads``). ``crm.url`` is the organisation URL, e.g.
``https://org.crm.dynamics.com``; the token is an OAuth bearer token (``auth: bearer``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from leadscoring.config import ConfigError
from leadscoring.crm.connector import PushRequest, Record
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

    def __init__(self, base_url: str, options: Mapping[str, Any], page_size: int) -> None:
        for key in options:
            if key not in OPTIONS:
                raise ConfigError(f"crm.options.{key}: unknown option for dynamics; known: {', '.join(OPTIONS)}")
        values: dict[str, str] = {}
        for key, (pattern, default, what) in OPTIONS.items():
            value = options.get(key, default)
            if not isinstance(value, str) or not re.fullmatch(pattern, value):
                raise ConfigError(f"crm.options.{key}: expected {what}, got {value!r}")
            values[key] = value
        self.base_url = base_url.rstrip("/")
        self.api_version, self.entity, self.entity_set = values["api_version"], values["entity"], values["entity_set"]
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
        low, high = _second(since), _second(until) + timedelta(seconds=1)
        query = _query(
            {
                "$select": f"{self.id_field},statecode,statuscode,modifiedon",
                "$filter": f"modifiedon ge {_odata_time(low)} and modifiedon lt {_odata_time(high)}",
                "$orderby": f"modifiedon asc,{self.id_field} asc",
            }
        )
        headers = {**ODATA_HEADERS, "Prefer": f"odata.maxpagesize={self.page_size}"}
        what = f"{self.entity_set} modified {_odata_time(low)} to {_odata_time(_second(until))}"
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
            modified_at=_parse_time(row.get("modifiedon"), lead_id),
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


def _second(moment: datetime) -> datetime:
    """``moment`` in UTC, cut to the second (a naive value is taken as UTC)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(microsecond=0)


def _odata_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any, lead_id: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise CrmError(f"{NAME}: lead {lead_id}: modifiedon {value!r} is not a date-time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
