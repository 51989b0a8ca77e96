"""Writing scores back to the CRM: ``PATCH {url}/leads/{id}`` with the score payload.

Retries with exponential backoff on 5xx, 429 and connection errors; bounded concurrency;
a state file (JSON lines, one per lead that succeeded, with a hash of what was sent) so a
re-run resends nothing that already arrived unless its score changed. The bearer token
is read from ``LEADSCORING_CRM_TOKEN`` and never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from .scoring import crm_payloads

log = logging.getLogger(__name__)
TOKEN_ENV = "LEADSCORING_CRM_TOKEN"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass
class PushSummary:
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    failures: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"sent {self.sent}, skipped {self.skipped} (already sent), failed {self.failed}"


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def read_state(path: Path) -> dict[str, str]:
    """lead id → digest of the payload the CRM accepted."""
    state: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                state[str(rec["lead_id"])] = rec["digest"]
    return state


async def _send(client: httpx.AsyncClient, url: str, payload: dict[str, Any], retries: int,
                backoff: float) -> str | None:
    """PATCH one payload; None on success, else the final error (no token in it)."""
    error = ""
    for attempt in range(retries + 1):
        try:
            resp = await client.patch(url, json=payload)
            if resp.status_code < 300:
                return None
            error = f"HTTP {resp.status_code}"
            if resp.status_code not in RETRY_STATUS:
                return error
            wait = float(resp.headers.get("retry-after", 0) or 0)
        except httpx.TransportError as exc:
            error, wait = f"{type(exc).__name__}", 0.0
        if attempt < retries:
            await asyncio.sleep(max(wait, backoff * 2**attempt * (0.5 + random.random() / 2)))
    return error


async def _push(payloads: list[dict[str, Any]], base_url: str, token: str | None, state_path: Path,
                concurrency: int, retries: int, backoff: float, timeout: float) -> PushSummary:
    summary = PushSummary()
    state = read_state(state_path)
    todo = []
    for p in payloads:
        if state.get(p["lead_id"]) == _digest(p):
            summary.skipped += 1
        else:
            todo.append(p)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    sem = asyncio.Semaphore(concurrency)
    state_path.parent.mkdir(parents=True, exist_ok=True)
    with open(state_path, "a", encoding="utf-8") as state_file:
        async with httpx.AsyncClient(headers=headers, timeout=timeout) as client:

            async def one(p: dict[str, Any]) -> None:
                async with sem:
                    err = await _send(client, f"{base_url.rstrip('/')}/leads/{p['lead_id']}", p, retries, backoff)
                if err is None:
                    summary.sent += 1
                    state_file.write(json.dumps({"lead_id": p["lead_id"], "digest": _digest(p)}) + "\n")
                    state_file.flush()
                else:
                    summary.failed += 1
                    summary.failures[p["lead_id"]] = err
                    log.warning("lead %s not written to the CRM: %s", p["lead_id"], err)

            await asyncio.gather(*(one(p) for p in todo))
    return summary


def push_scores(scores: pd.DataFrame | str | os.PathLike[str], crm_url: str, id_column: str = "id", *,
                state_file: str | os.PathLike[str] | None = None, concurrency: int = 8, retries: int = 5,
                backoff: float = 0.5, timeout: float = 10.0) -> PushSummary:
    """Write every score to the CRM (see module docstring); returns sent/skipped/failed counts."""
    if not isinstance(scores, pd.DataFrame):
        path = Path(scores)
        state_file = state_file or path.with_name(path.name + ".push-state.jsonl")
        scores = pd.read_csv(path, dtype={id_column: str})
    if state_file is None:
        raise ValueError("state_file is required when scores are given as a DataFrame")
    missing = [c for c in (id_column, "score", "bucket", "recommended_action") if c not in scores.columns]
    if missing:
        raise ValueError(f"scores lack column(s) {missing}")
    payloads = crm_payloads(scores, id_column)
    return asyncio.run(_push(payloads, crm_url, os.environ.get(TOKEN_ENV), Path(state_file), concurrency, retries,
                             backoff, timeout))
