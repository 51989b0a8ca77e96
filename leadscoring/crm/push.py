"""Writing scores back to the CRM: the one owner of pushing, whatever the CRM.

Each lead's score fields (``scoring.crm_fields``: score field -> CRM field name) go out as the
request its connector builds (:meth:`Connector.push_request`: method, path under the CRM's URL,
JSON body, headers); without a ``crm:`` section the ``rest`` connector's defaults send
``PATCH {url}/leads/{id}`` with ``{"lead_id": ..., "custom_fields": {...}}``.

- A lead counts as delivered only on a 2xx answer that is empty (e.g. 204) or JSON
  (``application/json`` or ``application/*+json``, parsed). Any other answer, such as a
  ``200 text/html`` login page from a proxy, fails naming what came back, is not retried and
  is not recorded as sent.
- Each request, answer included, is bounded by ``timeout`` seconds in all (a deadline for the
  whole exchange, not per network read), and an answer is read as a stream up to
  ``MAX_ANSWER_BYTES`` (1 MB): a longer one fails the lead without being read further.
- Retries 5xx, 429, connection errors and timeouts (tenacity) with exponential backoff
  (capped at ``max_backoff``); bounded concurrency.
- When the CRM asks to wait (HTTP 429, or ``Retry-After`` in seconds or as an HTTP date),
  the whole push pauses once: every worker holds its next request until the pause ends.
  A ``Retry-After`` beyond ``max_backoff`` stops the push at once ("the CRM asks to wait N s")
  instead of sleeping.
- An answer the connector calls final (its ``final_answer``: a spent daily request limit,
  HubSpot's 429 ``policyName: DAILY`` or Salesforce's 403 ``REQUEST_LIMIT_EXCEEDED``) stops
  the push at once: every lead not sent is reported "not sent: daily API request limit
  reached ...", and the next push sends them.
- A circuit breaker: after ``max_failures`` consecutive failures (connection failures,
  timeouts, pauses asked by the CRM, 2xx answers that are not the CRM's) nothing more is sent
  and every lead not sent is reported as failed ("not sent: ...", e.g. "not sent: CRM
  unreachable (circuit open)").
- A state file (JSON lines, one per lead the CRM accepted: destination, lead id and a hash
  of the body sent) so a re-run to the same CRM resends nothing that already arrived
  unless its score changed, while another CRM URL receives everything.
- Delivery is at least once: a lead in flight when a push is interrupted is sent again by
  the next run. Each request carries an ``Idempotency-Key`` derived from the destination, the
  lead id and the body, identical across runs, so the CRM can drop the repeat.
- Optional progress bar on stderr (leads sent / failed / remaining, and any pause).

Credentials come from :func:`leadscoring.crm.auth_headers` (the ``crm:`` section's variable,
else ``LEADSCORING_CRM_TOKEN`` as a bearer token when set) and are never logged.

"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from leadscoring.config import ConfigError, ExperimentConfig
from leadscoring.config.sections import CrmConfig
from leadscoring.crm import auth_headers, connector_for
from leadscoring.crm.connector import Connector, PushRequest
from leadscoring.crm.http import RETRY_STATUS, FinalAnswer, destination, retry_after_seconds
from leadscoring.crm.scores import check_scores, read_scores
from leadscoring.io import last_line_ended
from leadscoring.serving.payloads import crm_payloads
from leadscoring.termination import run_async

log = logging.getLogger(__name__)


CIRCUIT_OPEN = "not sent: CRM unreachable (circuit open)"

#: The push state's file in ``paths.crm_state`` (a push with a ``crm:`` section, the nightly cycle).
PUSH_STATE_FILE = "push-state.jsonl"


MAX_ANSWER_BYTES = 1 << 20  # the CRM answers a push with a few bytes of JSON; more is not its answer
MAX_ERROR_BYTES = 64 << 10  # of an error answer, what the connector's final-answer test reads


# The kinds of failure the circuit breaker counts: (label, what they are, why a lead was not sent).
_UNREACHABLE = ("CRM unreachable", "connection failures or timeouts", CIRCUIT_OPEN)
_RATE_LIMITED = ("CRM rate limit", "answers asking to wait (HTTP 429 or Retry-After)", "not sent: CRM rate limit")
_SERVER_FAILING = (
    "CRM failing",
    "leads answered with server errors (HTTP 5xx) until their retries ran out",
    "not sent: the CRM answers with server errors",
)
_NOT_CRM = (
    "wrong answers",
    "2xx answers that are not the CRM's (not JSON, or too large)",
    "not sent: the answers are not the CRM's",
)


@dataclass
class PushSummary:
    """What a push did. ``failed`` includes ``not_sent``: the leads never sent (or not
    accepted) because the push stopped early, for the reason in ``stopped``."""

    sent: int = 0
    skipped: int = 0
    failed: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    not_sent: int = 0  # of ``failed``: not sent because the push stopped early (circuit breaker)
    stopped: str = ""  # why the push stopped early, "" if it did not
    held_out: int = 0  # control leads of the A/B test, for which nothing is pushed (experiment.control_crm: none)
    dry_run: bool = False
    pending: int = 0  # a dry run: the leads it would send

    def __str__(self) -> str:
        if self.dry_run:
            return f"dry run: would send {self.pending}, skip {self.skipped} (already sent); nothing sent"
        text = f"sent {self.sent}, skipped {self.skipped} (already sent), failed {self.failed}"
        if self.held_out:
            text += f", {self.held_out} control lead(s) held out (experiment)"
        reason = self.stopped or "CRM unreachable (stopped after repeated connection failures or timeouts)"
        if self.not_sent:
            text += f"; {self.not_sent} not sent: {reason}"
        elif self.stopped:
            text += f"; stopped: {reason}"
        return text


def _digest(body: Any) -> str:
    """The hash of a request body the state file keeps (the same body: the same digest)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def idempotency_key(dest: str, lead_id: str, digest: str) -> str:
    """The same key for the same body to the same CRM, in every run."""
    return hashlib.sha256("\x1f".join((dest, lead_id, digest)).encode()).hexdigest()[:32]


def read_state(path: Path) -> dict[tuple[str, str], str]:
    """(destination, lead id) → digest of the request body that CRM accepted. Records without a
    destination (older state files) or unreadable lines are ignored: those leads are resent."""
    state: dict[tuple[str, str], str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():  # a damaged line is skipped
            try:
                rec = json.loads(line)
                key, digest = (str(rec["destination"]), str(rec["lead_id"])), str(rec["digest"])
            except (ValueError, KeyError, TypeError):
                continue  # blank, cut short by an interruption, or written by an older version
            state[key] = digest
    return state


class _Breaker:
    """Stops the push: after ``limit`` consecutive failures (connection failures, timeouts,
    pauses asked by the CRM, 2xx answers that are not the CRM's, leads whose every attempt
    was answered 5xx; 0: never), or at once through ``stop``. Once open, every lead
    not yet accepted fails with ``not_sent``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.streak: Counter[tuple[str, str, str]] = Counter()  # kind of failure -> count, since the last success
        self.opened = asyncio.Event()
        self.reason = ""
        self.not_sent = CIRCUIT_OPEN

    def success(self) -> None:
        self.streak.clear()

    def answered(self) -> None:
        """The CRM answered (reachable), though not with success: the streaks of other kinds
        end; leads failing with server errors still count (a CRM answering 5xx to everything
        is down as surely as an unreachable one)."""
        failing = self.streak[_SERVER_FAILING]
        self.streak.clear()
        if failing:
            self.streak[_SERVER_FAILING] = failing

    def failure(self, kind: tuple[str, str, str], detail: str = "") -> None:
        """Count one failure of ``kind`` (``_UNREACHABLE``, ``_RATE_LIMITED``, ``_NOT_CRM``,
        ``_SERVER_FAILING``);
        ``detail``, the failure itself, is quoted if it stops the push."""
        self.streak[kind] += 1
        n = self.streak.total()
        if not self.limit or n < self.limit:
            return
        if len(self.streak) == 1:
            label, what, not_sent = kind
            self.stop(f"{label}: {n} consecutive {what}" + (f" (the last: {detail})" if detail else ""), not_sent)
        else:
            labels = ", ".join(label for label, _, _ in self.streak)
            self.stop(f"{n} consecutive failures ({labels})", "not sent: push stopped after repeated failures")

    def stop(self, reason: str, not_sent: str) -> None:
        """Open now: nothing more is sent; ``reason`` is logged once and reported, and every
        lead not accepted fails with ``not_sent``."""
        if self.opened.is_set():
            return
        log.warning("push stopped: %s", reason)
        self.reason, self.not_sent = reason, not_sent
        self.opened.set()

    async def sleep(self, seconds: float) -> None:
        """Sleep, waking at once if the breaker opens meanwhile."""
        try:
            await asyncio.wait_for(self.opened.wait(), timeout=seconds)
        except TimeoutError:
            pass


class _Pause:
    """One wait for the whole push when the CRM asks to wait: every worker holds its next
    request until ``until`` (event-loop time). The answers to requests sent before a pause
    began belong to that pause, so a pause counts once toward the breaker however many
    workers were answered 429."""

    def __init__(self, breaker: _Breaker, backoff: float, cap: float, on_pause: Callable[[float], None]) -> None:
        self.breaker, self.backoff, self.cap, self.on_pause = breaker, backoff, cap, on_pause
        self.until = 0.0
        self.epoch = 0  # pauses begun so far
        self.streak = 0  # pauses since the last accepted request (the backoff without Retry-After)

    async def wait(self) -> int:
        """Wait until no pause is running (or the breaker opens); the epoch to send in."""
        while not self.breaker.opened.is_set() and (left := self.left()) > 0:
            await self.breaker.sleep(left)
        return self.epoch

    def left(self) -> float:
        """Seconds until the current pause ends (0 when none is running)."""
        return max(0.0, self.until - asyncio.get_running_loop().time())

    def success(self) -> None:
        self.streak = 0

    def asked(self, epoch: int, retry_after: float | None) -> None:
        """The answer to a request sent in ``epoch`` asked to wait ``retry_after`` seconds
        (None: no usable Retry-After, wait the backoff)."""
        if retry_after is not None and retry_after > self.cap:
            asks = f"the CRM asks to wait {math.ceil(retry_after)} s"
            self.breaker.stop(
                f"{asks} (Retry-After), longer than a push waits (--max-backoff {self.cap:g} s); run it later", f"not sent: {asks}"
            )
            return
        now = asyncio.get_running_loop().time()
        if epoch == self.epoch:  # the first such answer since the last pause began: a new pause
            self.epoch += 1
            self.streak += 1
            self.breaker.failure(_RATE_LIMITED)
            if self.breaker.opened.is_set():
                return
            wait = retry_after if retry_after is not None else self.backoff * 2 ** (self.streak - 1) * (0.5 + random.random() / 2)
            wait = min(wait, self.cap)
            self.until = max(self.until, now + wait)
            log.info("the CRM asks to wait: every request paused for %.1f s", wait)
            self.on_pause(wait)
        elif retry_after is not None:  # a later answer to a request sent before this pause: the same pause
            self.until = max(self.until, now + retry_after)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()[:80]


def _answer_problem(status: int, content_type: str | None, body: bytes) -> str | None:
    """None if a 2xx answer is what the CRM contract says (empty, or JSON), else why not."""
    if not body:
        return None
    media = _media_type(content_type)
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        what = media or "has no content type"
        return f"HTTP {status} answer {'is ' if media else ''}{what}, not JSON: not the CRM's answer (a login page or proxy?)"
    try:
        json.loads(body)
    except ValueError:
        return f"HTTP {status} answer is not valid JSON: not the CRM's answer"
    return None


async def _exchange(
    client: httpx.AsyncClient, request: PushRequest, timeout: float, final: FinalAnswer | None = None
) -> tuple[int, str | None, str | None, str | None]:
    """One request (``request.path`` a full URL), answer included, within ``timeout`` seconds
    in all: (status, Retry-After header, problem, why final), problem None for an accepted 2xx.
    The answer is read as a stream and given up past ``MAX_ANSWER_BYTES``; an error status's
    body is read (up to ``MAX_ERROR_BYTES``) only for ``final``, the connector's test of answers
    no retry can help, whose reason is the last item (else None). Raises ``TimeoutError`` or
    ``httpx.TransportError``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    stream = client.stream(request.method, request.path, json=request.body, headers=dict(request.headers))
    async with asyncio.timeout_at(deadline), stream as resp:
        status = resp.status_code
        if not resp.is_success:
            why = None
            if final is not None:
                body = bytearray()
                with contextlib.suppress(httpx.DecodingError):  # an answer that cannot be read: the usual rules
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_ERROR_BYTES:
                            break
                plain = {k: v for k, v in resp.headers.items() if k.lower() not in ("content-encoding", "content-length")}
                why = final(httpx.Response(status, headers=plain, content=bytes(body[:MAX_ERROR_BYTES])))
            return status, resp.headers.get("retry-after"), f"HTTP {status}" + (f": {why}" if why else ""), why
        too_big = f"HTTP {status} answer larger than {MAX_ANSWER_BYTES // (1 << 20)} MB: not the CRM's answer"
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
            return status, None, too_big, None
        body = bytearray()
        try:
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    return status, None, too_big, None
                if loop.time() >= deadline:  # should the loop never get to cancel us between chunks
                    raise TimeoutError
        except httpx.DecodingError:
            return status, None, f"HTTP {status} answer could not be decoded (Content-Encoding): not the CRM's answer", None
        return status, None, _answer_problem(status, resp.headers.get("content-type"), bytes(body)), None


@dataclass(frozen=True)
class _Policy:
    retries: int
    backoff: float
    max_backoff: float
    timeout: float
    final: FinalAnswer | None = None  # the connector's error answers that no retry can help


class _Retryable(Exception):
    """An attempt that failed in a way worth trying again; its message says how (no token in
    it). ``paused``: the CRM asked to wait, so the push-wide pause is the wait before the next try."""

    def __init__(self, error: str, paused: bool = False, server_error: bool = False) -> None:
        super().__init__(error)
        self.paused = paused
        self.server_error = server_error


async def _attempt(
    client: httpx.AsyncClient, request: PushRequest, policy: _Policy, breaker: _Breaker, pause: _Pause
) -> str | None:
    """One request of one lead, once any pause is over: None when the CRM accepted it, the
    final error when it will never be (a 4xx, an answer that is not the CRM's, the breaker
    open). Raises :class:`_Retryable` for what may pass (connection failures, timeouts, 5xx,
    429), having told the breaker and, when the CRM asks to wait, the shared pause."""
    epoch = await pause.wait()
    if breaker.opened.is_set():
        return breaker.not_sent
    try:
        status, retry_after_header, problem, why_final = await _exchange(client, request, policy.timeout, policy.final)
    except (httpx.TransportError, TimeoutError) as exc:
        timed_out = isinstance(exc, TimeoutError | httpx.TimeoutException)
        breaker.failure(_UNREACHABLE)
        raise _Retryable(f"timeout after {policy.timeout:g}s" if timed_out else type(exc).__name__) from None
    if problem is None:
        breaker.success()
        pause.success()
        return None
    if why_final is not None:  # e.g. a spent daily request limit: every other lead would be refused too
        breaker.stop(why_final, f"not sent: {why_final}")
        return problem
    if status < 300:  # a 2xx that is not the CRM's answer (a login page, a proxy, ...): final
        breaker.failure(_NOT_CRM, problem)
        return problem
    if status not in RETRY_STATUS:
        breaker.answered()  # the CRM answered: reachable, but this lead failed for good
        return problem
    retry_after = retry_after_seconds(retry_after_header, cap=math.inf)
    if status == 429 or retry_after is not None:
        pause.asked(epoch, retry_after)
        raise _Retryable(problem, paused=True)
    breaker.answered()
    raise _Retryable(problem, server_error=status >= 500)


def _backoff(policy: _Policy, pause: _Pause) -> Callable[[RetryCallState], float]:
    """The wait before the next attempt (a tenacity wait): what is left of the push-wide pause
    when the CRM asked to wait (its ``Retry-After``, or the pause's own backoff), else
    exponential backoff from ``policy.backoff``, jittered (half to all of it) and capped at
    ``policy.max_backoff``."""

    def wait(state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome is not None else None
        if isinstance(failure, _Retryable) and failure.paused:
            return pause.left()
        return min(policy.max_backoff, policy.backoff * 2 ** (state.attempt_number - 1) * (0.5 + random.random() / 2))

    return wait


def _log_retry(state: RetryCallState) -> None:
    failure = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    log.debug("%s: %s; attempt %d in %.2f s", state.args[1].path, failure, state.attempt_number + 1, wait)


async def _send(client: httpx.AsyncClient, request: PushRequest, policy: _Policy, breaker: _Breaker, pause: _Pause) -> str | None:
    """Send one lead's request, retried (tenacity) up to ``policy.retries`` times; None on success,
    else the final error (no token in it). Waits between attempts end early when the breaker
    opens; the next attempt then reports the lead as not sent. A lead whose last attempt was
    answered 5xx counts once toward the breaker."""

    def give_up(state: RetryCallState) -> str:
        failure = state.outcome.exception() if state.outcome is not None else None
        if isinstance(failure, _Retryable) and failure.server_error:
            breaker.failure(_SERVER_FAILING, str(failure))
        return str(failure) if failure is not None else ""

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.retries + 1),
        wait=_backoff(policy, pause),
        retry=retry_if_exception_type(_Retryable),
        sleep=breaker.sleep,
        before_sleep=_log_retry,
        retry_error_callback=give_up,
    )
    return await retrying(_attempt, client, request, policy, breaker, pause)


class _Progress:
    """A tqdm bar on stderr: leads done of those to send, with sent / failed / remaining and
    any pause asked by the CRM (disabled: does nothing)."""

    def __init__(self, total: int, summary: PushSummary, enabled: bool) -> None:
        from tqdm import tqdm

        self.summary, self.total = summary, total
        self.bar = tqdm(total=total, desc="push", unit=" leads", disable=not enabled, mininterval=1.0)
        self.note = ""
        self._show()

    def _show(self, refresh: bool = False) -> None:
        s = self.summary
        text = f"sent {s.sent}, failed {s.failed}, remaining {self.total - s.sent - s.failed}" + (
            f"; {self.note}" if self.note else ""
        )
        self.bar.set_postfix_str(text, refresh=refresh)

    def done(self) -> None:
        self.note = ""
        self._show()
        self.bar.update(1)

    def paused(self, seconds: float) -> None:
        self.note = f"CRM asked to wait: paused {seconds:.1f} s"
        self._show(refresh=True)

    def close(self) -> None:
        self._show()
        self.bar.close()


def _no_sniffio_lookups() -> None:
    """httpcore asks ``import sniffio`` at every lock of every request; without the package
    installed (anyio no longer needs it) each failed import searches the whole ``sys.path``
    (a fifth of a loopback push's time). Record it once as absent, so the import fails at once."""
    import importlib.util
    import sys

    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


def _full_url(dest: str, path: str) -> str:
    """A connector's request path joined to the destination (a full URL is kept)."""
    if path.startswith(("http://", "https://")):
        return path
    return f"{dest}/{path.lstrip('/')}"


def _to_send(
    requests: list[tuple[str, PushRequest]], dest: str, state_path: Path, summary: PushSummary
) -> list[tuple[str, PushRequest]]:
    """The (lead id, request) pairs ``dest`` has not accepted yet with this very body (the
    state file); the others are counted in ``summary.skipped``."""
    state = read_state(state_path)
    todo = []
    for lead_id, request in requests:
        if state.get((dest, lead_id)) == _digest(request.body):
            summary.skipped += 1
        else:
            todo.append((lead_id, request))
    return todo


async def _push(
    requests: list[tuple[str, PushRequest]],
    dest: str,
    headers: Mapping[str, str],
    state_path: Path,
    concurrency: int,
    policy: _Policy,
    max_failures: int,
    progress: bool,
    transport: httpx.AsyncBaseTransport | None,
) -> PushSummary:
    """Send each (lead id, request) not already accepted by ``dest`` (the state file), and
    record each lead the CRM accepts."""
    summary = PushSummary()
    todo = _to_send(requests, dest, state_path, summary)
    log.info("push to %s: %d leads to send, %d already sent", dest, len(todo), summary.skipped)
    sem = asyncio.Semaphore(concurrency)
    breaker = _Breaker(max_failures)
    bar = _Progress(len(todo), summary, progress)
    pause = _Pause(breaker, policy.backoff, policy.max_backoff, bar.paused)
    state_path.parent.mkdir(parents=True, exist_ok=True)
    _no_sniffio_lookups()
    try:
        with open(state_path, "a", encoding="utf-8") as state_file:
            if not last_line_ended(state_path):  # a line cut short by an interruption: ended, not glued onto
                state_file.write("\n")
            async with httpx.AsyncClient(headers=dict(headers), timeout=policy.timeout, transport=transport) as client:

                async def one(lead_id: str, request: PushRequest) -> None:
                    digest = _digest(request.body)
                    request = replace(
                        request,
                        path=_full_url(dest, request.path),
                        headers={**request.headers, "Idempotency-Key": idempotency_key(dest, lead_id, digest)},
                    )
                    async with sem:
                        err = await _send(client, request, policy, breaker, pause)
                    if err is None:
                        summary.sent += 1
                        state_file.write(json.dumps({"destination": dest, "lead_id": lead_id, "digest": digest}) + "\n")
                        state_file.flush()
                    else:
                        summary.failed += 1
                        summary.failures[lead_id] = err
                        if breaker.opened.is_set() and err == breaker.not_sent:
                            summary.not_sent += 1
                        else:
                            log.warning("lead %s not written to the CRM: %s", lead_id, err)
                    bar.done()

                await asyncio.gather(*(one(lead_id, request) for lead_id, request in todo))
    finally:
        bar.close()
    summary.stopped = breaker.reason
    return summary


def _connection(crm: CrmConfig | None, crm_url: str | None) -> tuple[str, Connector, dict[str, str]]:
    """(destination, connector, credentials header) of a push: ``crm``'s connector and
    credentials with ``crm_url`` (when given) in place of ``crm.url``; without ``crm``, the
    ``rest`` connector's defaults at ``crm_url``."""
    from leadscoring.crm.rest import Rest

    url = crm_url or (crm.url if crm is not None else "")
    if not url:
        raise ConfigError("push: no CRM URL; give --crm-url or a crm: section with its url")
    dest = destination(url)  # a bad URL fails here, before any file is read or written
    if crm is None:
        return dest, Rest(url), auth_headers(None)
    if crm_url:
        crm = crm.model_copy(update={"url": crm_url})
    return dest, connector_for(crm), auth_headers(crm)


def push_scores(
    scores: pd.DataFrame | str | os.PathLike[str],
    crm_url: str | None = None,
    id_column: str = "id",
    *,
    crm: CrmConfig | None = None,
    state_file: str | os.PathLike[str] | None = None,
    concurrency: int = 8,
    retries: int = 5,
    backoff: float = 0.5,
    timeout: float = 10.0,
    max_failures: int = 5,
    max_backoff: float = 30.0,
    fields: Mapping[str, str] | None = None,
    progress: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
    experiment: ExperimentConfig | None = None,
    dry_run: bool = False,
) -> PushSummary:
    """Write every score to the CRM (see module docstring); returns sent/skipped/failed counts.

    ``crm``: the configuration's ``crm:`` section (its connector and credentials);
    ``crm_url``: the CRM's base URL, in place of ``crm.url`` when both are given (alone: the
    ``rest`` defaults, ``PATCH {url}/leads/{id}``); ``state_file``: what each CRM accepted
    (default for a scores file: ``SCORES.push-state.jsonl`` beside it);
    ``timeout``: seconds per request, answer included; ``max_failures``: consecutive
    connection failures, timeouts, pauses asked by the CRM or 2xx answers that are not the
    CRM's before giving up (0: never);
    ``max_backoff``: longest wait between two attempts; a ``Retry-After`` beyond it stops the
    push; ``fields``: score field -> CRM custom-field name (``scoring.crm_fields``; default
    the package's); ``progress``: show a progress bar on stderr; ``transport``: an httpx
    transport in place of the network (tests); ``experiment``: the ``experiment:`` section,
    what a control lead of the A/B test gets (nothing, or only its marker; see
    :func:`~leadscoring.serving.payloads.crm_payloads`); ``dry_run``: count the leads a push
    would send (``pending``) and skip, sending nothing and writing nothing."""
    if timeout <= 0 or concurrency < 1 or retries < 0 or max_failures < 0 or backoff < 0 or max_backoff < 0:
        raise ConfigError("push: timeout must be > 0, concurrency >= 1, and retries, max_failures, backoff and max_backoff >= 0")
    dest, connector, headers = _connection(crm, crm_url)
    if isinstance(scores, pd.DataFrame):
        scores = check_scores(scores, id_column)
    else:
        path = Path(scores)
        state_file = state_file or path.with_name(path.name + ".push-state.jsonl")
        scores = read_scores(path, id_column)
    if state_file is None:
        raise ValueError("state_file is required when scores are given as a DataFrame")
    payloads = crm_payloads(scores, id_column, fields, experiment)
    requests = [(p["lead_id"], connector.push_request(p["lead_id"], p["custom_fields"])) for p in payloads]
    held_out = len(scores) - len(payloads)
    if held_out:
        log.info("push: %d control lead(s) of the A/B test held out: nothing is pushed for them", held_out)
    if dry_run:
        summary = PushSummary(dry_run=True, held_out=held_out)
        summary.pending = len(_to_send(requests, dest, Path(state_file), summary))
        return summary
    policy = _Policy(retries=retries, backoff=backoff, max_backoff=max_backoff, timeout=timeout, final=connector.final_answer)
    run = _push(requests, dest, headers, Path(state_file), concurrency, policy, max_failures, progress, transport)
    if not progress:
        summary = run_async(run)
    else:
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm():  # warnings printed above the bar, not through it
            summary = run_async(run)
    summary.held_out = held_out
    return summary
