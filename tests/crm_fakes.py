"""What the CRM connector tests share: a JSON client whose requests a fake CRM answers, and the
outcome the pull's status map gives a record. Each test file keeps its own fake CRM (what that
CRM's API does is the test's subject)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from leadscoring.crm.connector import Record
from leadscoring.crm.http import JsonClient
from leadscoring.crm.outcomes import StatusMap


def fake_client(
    name: str,
    base_url: str,
    fake: Callable[[httpx.Request], httpx.Response],
    *,
    headers: Mapping[str, str] | None = None,
    sleeps: list[float] | None = None,
) -> JsonClient:
    """The client of CRM ``name`` at ``base_url``, every request answered by ``fake``
    (``httpx.MockTransport``); the waits between retries are not slept but appended to
    ``sleeps``."""
    return JsonClient(
        name,
        base_url,
        headers=headers,
        transport=httpx.MockTransport(fake),
        sleep=(sleeps if sleeps is not None else []).append,
    )


def outcome(record: Record, status_map: Mapping[str, list[dict[str, Any]]]) -> str | None:
    """The outcome ``status_map`` gives ``record`` as the pull decides it (the first outcome,
    in the order converted, lost, open, with a rule all of whose fields match), or None."""
    return StatusMap.from_rules(status_map).match(record.fields)
