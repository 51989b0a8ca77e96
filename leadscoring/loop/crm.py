"""Writing scores back to the CRM: ``PATCH {url}/leads/{id}`` with the score payload.

- Retries 5xx, 429, connection errors and timeouts with exponential backoff (capped), and
  honours ``Retry-After`` (seconds or HTTP date, capped too); bounded concurrency; each
  request bounded by ``timeout`` seconds.
- A circuit breaker: after ``max_failures`` consecutive connection failures or timeouts the
  CRM is taken as unreachable, nothing more is sent, and every lead not sent is reported
  as failed ("not sent: CRM unreachable (circuit open)").
- A state file (JSON lines, one per lead the CRM accepted: destination, lead id and a hash
  of what was sent) so a re-run to the same CRM resends nothing that already arrived
  unless its score changed, while another CRM URL receives everything.
- Delivery is at least once: a lead in flight when a push is interrupted is sent again by
  the next run. Each PATCH carries an ``Idempotency-Key`` derived from the destination, the
  lead id and the payload, identical across runs, so the CRM can drop the repeat.

The bearer token is read from ``LEADSCORING_CRM_TOKEN`` and never logged.

"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pandas as pd

from leadscoring.config import ConfigError
from leadscoring.loop.scores import check_scores, read_scores
from leadscoring.serving.payloads import crm_payloads

log = logging.getLogger(__name__)


TOKEN_ENV = "LEADSCORING_CRM_TOKEN"


RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


CIRCUIT_OPEN = "not sent: CRM unreachable (circuit open)"


_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass
class PushSummary:
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    not_sent: int = 0  # of ``failed``: never sent because the circuit breaker opened

    def __str__(self) -> str:
        text = f"sent {self.sent}, skipped {self.skipped} (already sent), failed {self.failed}"
        if self.not_sent:
            text += f"; {self.not_sent} not sent: CRM unreachable (stopped after repeated connection failures or timeouts)"
        return text


def destination(url: str) -> str:
    """The normalised base URL the state file is keyed by (scheme and host in lower case,
    default port and trailing slashes dropped)."""
    try:
        u = httpx.URL(url.strip())
    except httpx.InvalidURL as exc:
        raise ConfigError(f"CRM URL {url!r} is not a valid URL ({exc})") from None
    if u.scheme not in _DEFAULT_PORTS or not u.host:
        raise ConfigError(f"CRM URL {url!r} must start with http:// or https:// and name a host")
    if u.query or u.fragment:
        raise ConfigError(f"CRM URL {url!r} must be a base URL without ?query or #fragment")
    host = f"[{u.host}]" if ":" in u.host else u.host
    port = f":{u.port}" if u.port is not None and u.port != _DEFAULT_PORTS[u.scheme] else ""
    return f"{u.scheme}://{host}{port}{u.raw_path.decode('ascii').rstrip('/')}"


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def idempotency_key(dest: str, lead_id: str, digest: str) -> str:
    """The same key for the same payload to the same CRM, in every run."""
    return hashlib.sha256("\x1f".join((dest, lead_id, digest)).encode()).hexdigest()[:32]


def read_state(path: Path) -> dict[tuple[str, str], str]:
    """(destination, lead id) → digest of the payload that CRM accepted. Records without a
    destination (older state files) or unreadable lines are ignored: those leads are resent."""
    state: dict[tuple[str, str], str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                key, digest = (str(rec["destination"]), str(rec["lead_id"])), str(rec["digest"])
            except (ValueError, KeyError, TypeError):
                continue  # blank, cut short by an interruption, or written by an older version
            state[key] = digest
    return state


def retry_after_seconds(value: str | None, *, cap: float, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay in seconds or an HTTP date),
    at most ``cap``; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # HTTP dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), cap)


class _Breaker:
    """Opens after ``limit`` consecutive connection failures or timeouts (0: never)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.consecutive = 0
        self.opened = asyncio.Event()

    def success(self) -> None:
        self.consecutive = 0

    def failure(self) -> None:
        self.consecutive += 1
        if self.limit and self.consecutive >= self.limit and not self.opened.is_set():
            log.warning("CRM unreachable: %d consecutive connection failures or timeouts; stopping", self.consecutive)
            self.opened.set()

    async def sleep(self, seconds: float) -> None:
        """Sleep, waking at once if the breaker opens meanwhile."""
        try:
            await asyncio.wait_for(self.opened.wait(), timeout=seconds)
        except TimeoutError:
            pass


async def _send(
    client: httpx.AsyncClient,
    url: str,
    payload: dict[str, Any],
    headers: dict[str, str],
    retries: int,
    backoff: float,
    max_backoff: float,
    timeout: float,
    breaker: _Breaker,
) -> str | None:
    """PATCH one payload; None on success, else the final error (no token in it)."""
    error = ""
    for attempt in range(retries + 1):
        if breaker.opened.is_set():
            return CIRCUIT_OPEN
        retry_after = None
        try:
            async with asyncio.timeout(timeout):  # the whole request, not only each network wait
                resp = await client.patch(url, json=payload, headers=headers)
        except (httpx.TransportError, TimeoutError) as exc:
            error = f"timeout after {timeout:g}s" if isinstance(exc, TimeoutError | httpx.TimeoutException) else type(exc).__name__
            breaker.failure()
        else:
            breaker.success()
            if resp.status_code < 300:
                return None
            error = f"HTTP {resp.status_code}"
            if resp.status_code not in RETRY_STATUS:
                return error
            retry_after = retry_after_seconds(resp.headers.get("retry-after"), cap=max_backoff)
        if attempt < retries:
            wait = min(max_backoff, backoff * 2**attempt * (0.5 + random.random() / 2))
            await breaker.sleep(max(wait, retry_after or 0.0))
    return error


async def _push(
    payloads: list[dict[str, Any]],
    base_url: str,
    token: str | None,
    state_path: Path,
    concurrency: int,
    retries: int,
    backoff: float,
    timeout: float,
    max_failures: int,
    max_backoff: float,
) -> PushSummary:
    summary = PushSummary()
    dest = destination(base_url)
    state = read_state(state_path)
    todo = []
    for p in payloads:
        if state.get((dest, p["lead_id"])) == _digest(p):
            summary.skipped += 1
        else:
            todo.append(p)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    sem = asyncio.Semaphore(concurrency)
    breaker = _Breaker(max_failures)
    state_path.parent.mkdir(parents=True, exist_ok=True)
    with open(state_path, "a", encoding="utf-8") as state_file:
        async with httpx.AsyncClient(headers=headers, timeout=timeout) as client:

            async def one(p: dict[str, Any]) -> None:
                lead_id, digest = p["lead_id"], _digest(p)
                async with sem:
                    err = await _send(
                        client,
                        f"{dest}/leads/{quote(lead_id, safe='')}",
                        p,
                        {"Idempotency-Key": idempotency_key(dest, lead_id, digest)},
                        retries,
                        backoff,
                        max_backoff,
                        timeout,
                        breaker,
                    )
                if err is None:
                    summary.sent += 1
                    state_file.write(json.dumps({"destination": dest, "lead_id": lead_id, "digest": digest}) + "\n")
                    state_file.flush()
                    return
                summary.failed += 1
                summary.failures[lead_id] = err
                if err == CIRCUIT_OPEN:
                    summary.not_sent += 1
                else:
                    log.warning("lead %s not written to the CRM: %s", lead_id, err)

            await asyncio.gather(*(one(p) for p in todo))
    return summary


def push_scores(
    scores: pd.DataFrame | str | os.PathLike[str],
    crm_url: str,
    id_column: str = "id",
    *,
    state_file: str | os.PathLike[str] | None = None,
    concurrency: int = 8,
    retries: int = 5,
    backoff: float = 0.5,
    timeout: float = 10.0,
    max_failures: int = 5,
    max_backoff: float = 30.0,
    fields: Mapping[str, str] | None = None,
) -> PushSummary:
    """Write every score to the CRM (see module docstring); returns sent/skipped/failed counts.

    ``timeout``: seconds per request; ``max_failures``: consecutive connection failures or
    timeouts before giving up on the CRM (0: never); ``max_backoff``: longest wait between
    two attempts, ``Retry-After`` included; ``fields``: score field -> CRM custom-field name
    (``scoring.crm_fields``; default the package's)."""
    if timeout <= 0 or concurrency < 1 or retries < 0 or max_failures < 0 or backoff < 0 or max_backoff < 0:
        raise ConfigError("push: timeout must be > 0, concurrency >= 1, and retries, max_failures, backoff and max_backoff >= 0")
    destination(crm_url)  # a bad URL fails here, before any file is read or written
    if isinstance(scores, pd.DataFrame):
        scores = check_scores(scores, id_column)
    else:
        path = Path(scores)
        state_file = state_file or path.with_name(path.name + ".push-state.jsonl")
        scores = read_scores(path, id_column)
    if state_file is None:
        raise ValueError("state_file is required when scores are given as a DataFrame")
    payloads = crm_payloads(scores, id_column, fields)
    return asyncio.run(
        _push(
            payloads,
            crm_url,
            os.environ.get(TOKEN_ENV),
            Path(state_file),
            concurrency,
            retries,
            backoff,
            timeout,
            max_failures,
            max_backoff,
        )
    )
