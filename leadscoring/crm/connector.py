"""What every CRM connector offers: how to write a lead's score fields (push) and how to
read the leads changed in a time window (pull), in the CRM's own API.

A connector knows one CRM's URLs, paging, filters and encodings. It does not retry, wait,
log credentials, keep state or map statuses: the shared HTTP client (:mod:`leadscoring.crm.http`)
retries and honours ``Retry-After``; the pull (:mod:`leadscoring.crm.pull`) owns the
watermark, the status map and the outcome history; the push (:mod:`leadscoring.crm.push`)
owns concurrency, the circuit breaker, idempotency keys and the per-CRM state.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from leadscoring.crm.http import JsonClient


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
    """

    lead_id: str
    modified_at: datetime
    fields: Mapping[str, Any]
    deleted: bool = False
    outcome_at: datetime | None = None


class Connector(Protocol):
    """One CRM's API. ``kind`` is its ``crm.kind`` in the configuration."""

    kind: str

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
