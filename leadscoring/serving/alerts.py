"""Alerts to a webhook (``alerts:`` section): a JSON POST whose ``text`` field Slack, Teams
(incoming webhooks) and most chat tools show as a message.

- **A lead entering an alert level** (``alerts.levels``, default the top bucket): a lead
  whose bucket is that level while its previous score (the score history's, which the scorer
  already looks up) was in another bucket or absent. A lead already at that level is not
  alerted again; one that leaves it and comes back is (it entered again). The service also
  remembers the buckets it gave lately, so a lead scored twice before the history records the
  first scoring is alerted once. A control lead of the A/B test (``experiment:``) is never
  alerted: sales works those leads its usual way, and an alert would treat them. One message
  per lead; more than ``alerts.max_messages`` leads in one scoring job or call: one summary
  message per level. The one way in:
  :class:`LeadAlerts` (the service, with its memory) and :func:`alert_scored_leads` (a
  scoring job: ``leadscoring score``, ``cycle``).
- **The monitoring report's alerts**: :func:`send_monitoring_alerts`, once per alert: the
  same alert (kind, variable, condition, cohorts) with figures that moved since is not sent
  again, a new cohort crossing a threshold is; what was sent is kept in
  ``paths.crm_state``/``alerts_sent.json``.

Sending never holds up scoring: :class:`AlertSender` queues each message (bounded:
``alerts.queue_size``; a message beyond is dropped with a warning) and a background thread
posts them, retrying 5xx, 429, timeouts and connection errors with exponential backoff
(tenacity; ``alerts.retries``, ``backoff``, ``max_backoff``); another answer is final. A
command waits for its queue at most ``alerts.drain_seconds`` (``score`` and ``monitor`` at
their end, ``cycle`` right after its scorings). The webhook URL
(often a secret: Slack's carries a token) comes from ``$LEADSCORING_ALERTS_WEBHOOK``
(``alerts.webhook_env``) or ``alerts.webhook_url``, and only its scheme and host are ever
logged.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from leadscoring.config import AlertsConfig, ConfigError, ProjectConfig
from leadscoring.errors import LeadDataError
from leadscoring.io import read_json_object, write_json
from leadscoring.serving.experiment import GROUP_FIELD, is_control
from leadscoring.serving.scorer import assign_buckets
from leadscoring.serving.scores_file import read_scores_file

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

#: The message's field, as Slack-compatible webhooks read it.
TEXT_FIELD = "text"
#: What was sent of the monitoring alerts, in ``paths.crm_state``.
ALERTS_STATE = "alerts_sent.json"
#: Leads whose latest bucket the service remembers (the newest), beside the score history.
REMEMBER_LEADS = 100_000
#: The fields of a scored lead an entry alert reads (beside its id).
ALERT_FIELDS = ("score", "bucket", "previous_score", "recommended_action")
#: Leads named in a summary message.
_NAMED = 10


def where(url: str) -> str:
    """What may be shown of a webhook URL: its scheme, host and port (the path may hold a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def message_prefix(cfg: ProjectConfig) -> str:
    """What every message starts with: the client's name in brackets (``report.client_name``), if any."""
    return f"[{cfg.report.client_name}] " if cfg.report.client_name else ""


def webhook_url(cfg: ProjectConfig) -> str | None:
    """The alerts' webhook URL: ``$<alerts.webhook_env>`` when set, else ``alerts.webhook_url``;
    None: alerts are off. A variable that is not an http(s) URL is a one-line
    :class:`ConfigError` naming the variable (never its value)."""
    env = cfg.alerts.webhook_env
    value = os.environ.get(env, "").strip()
    if value:
        if not AlertsConfig.is_web_url(value):
            raise ConfigError(f"${env}: the alerts' webhook must be an http:// or https:// URL naming a host")
        return value
    return cfg.alerts.webhook_url


class _HideWebhooks(logging.Filter):
    """Rewrites httpx's own request log lines ("HTTP Request: POST <url> ...") so that a
    webhook's URL shows as its scheme and host only."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.urls and isinstance(record.args, tuple):
            shown = []
            for arg in record.args:
                text = str(arg)
                hidden = next((u for u in self.urls if text.startswith(u)), None)
                shown.append(f"{where(hidden)}/…" if hidden is not None else arg)
            record.args = tuple(shown)
        return True


_HIDE = _HideWebhooks()
logging.getLogger("httpx").addFilter(_HIDE)


class _Retry(Exception):
    """A POST that failed in a way that may pass (5xx, 429, timeout, no connection)."""


class _Final(Exception):
    """A POST the webhook refused for good (another 4xx, or an answer that is not 2xx)."""


class AlertSender:
    """Posts ``{"text": ...}`` to one webhook: now (:meth:`post`, retried) or in the
    background (:meth:`send`, queued; see the module). ``transport`` (an httpx transport) and
    ``sleep`` (the wait between tries) can be replaced in tests."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        queue_size: int = 1000,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url, self.where = url, where(url)
        _HIDE.urls.add(url)  # httpx logs each request's URL: not this one
        self.timeout, self.retries, self.backoff, self.max_backoff = timeout, retries, backoff, max_backoff
        self.transport, self.sleep = transport, sleep
        self.delivered = self.failed = self.dropped = 0
        self.sent = 0  # messages given to send(), queued or dropped
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None

    @classmethod
    def for_config(cls, cfg: ProjectConfig, **kwargs: Any) -> AlertSender | None:
        """The sender of ``cfg``'s ``alerts:`` section; None without a webhook URL."""
        url = webhook_url(cfg)
        if url is None:
            return None
        a = cfg.alerts
        settings: dict[str, Any] = {
            "timeout": a.timeout,
            "retries": a.retries,
            "backoff": a.backoff,
            "max_backoff": a.max_backoff,
            "queue_size": a.queue_size,
        }
        return cls(url, **{**settings, **kwargs})

    # -- now ------------------------------------------------------------------------------------

    def _http(self) -> httpx.Client:
        import httpx

        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout, transport=self.transport)
            return self._client

    def _wait(self, state: Any) -> float:
        """Exponential backoff from ``backoff``, jittered (half to all of it), capped."""
        return min(self.max_backoff, self.backoff * 2 ** (state.attempt_number - 1)) * (0.5 + random.random() / 2)

    def _attempt(self, text: str) -> None:
        import httpx

        try:
            answer = self._http().post(self.url, json={TEXT_FIELD: text})
        except httpx.TransportError as exc:
            what = "timeout" if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
            raise _Retry(f"no answer ({what})") from None
        if answer.status_code == 429 or answer.status_code >= 500:
            raise _Retry(f"HTTP {answer.status_code}")
        if not answer.is_success:
            raise _Final(f"HTTP {answer.status_code}")

    def post(self, text: str) -> bool:
        """POST one message now, retried (see the module); True when the webhook accepted it
        (2xx). A failure is logged (one line, the URL's host only), never raised."""
        retrying = Retrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(_Retry),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    self._attempt(text)
        except _Retry as exc:
            self.failed += 1
            log.warning("alert not delivered to the webhook at %s after %d tries: %s", self.where, self.retries + 1, exc)
            return False
        except _Final as exc:
            self.failed += 1
            log.warning("alert refused by the webhook at %s: %s; not retried", self.where, exc)
            return False
        self.delivered += 1
        return True

    # -- in the background ------------------------------------------------------------------------

    def send(self, text: str) -> bool:
        """Queue one message for the background thread (started with the first); False, with a
        warning, when the queue is full (the message is dropped): never waits."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
                self._thread.start()
        self.sent += 1
        try:
            self._queue.put_nowait(text)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning(
                    "alerts: %d waiting for the webhook at %s (slow or down): alert dropped (%d so far)",
                    self._queue.qsize(),
                    self.where,
                    self.dropped,
                )
            return False
        return True

    def _run(self) -> None:
        while True:
            text = self._queue.get()
            try:
                if text is None:
                    return
                self.post(text)
            except Exception:  # never let one message stop the thread
                log.exception("alerts: sending failed")
            finally:
                self._queue.task_done()

    def waiting(self) -> int:
        """Messages queued or being posted."""
        return self._queue.unfinished_tasks

    def drain(self, seconds: float) -> int:
        """Wait up to ``seconds`` for the queued messages to be posted; returns those left."""
        end = time.monotonic() + seconds
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._queue.all_tasks_done.wait(left)
            return self._queue.unfinished_tasks

    def close(self, seconds: float = 0.0) -> int:
        """Wait up to ``seconds`` for the queue (:meth:`drain`), then stop the thread; returns
        the messages left unsent (logged)."""
        left = self.drain(seconds)
        if left:
            log.warning("alerts: %d alert(s) not sent to the webhook at %s within %g s: dropped", left, self.where, seconds)
        if self._thread is not None and self._thread.is_alive():
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass  # a daemon thread: it ends with the process
        with self._lock:
            client, self._client = (self._client, None) if not left else (None, self._client)
        if client is not None:
            client.close()
        return left


# -- leads entering an alert level ------------------------------------------------------------


def alert_levels(cfg: ProjectConfig) -> list[str]:
    """The buckets whose entry is alerted: ``alerts.levels``, default the top bucket."""
    return list(cfg.alerts.levels or [cfg.scoring.buckets[0].name])


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return number


def _shown(value: Any) -> str:
    number = _number(value)
    return str(int(number)) if number == number else str(value)


class LeadAlerts:
    """Queues a message for each lead entering an alert level (see the module). ``remember``:
    leads whose latest bucket this object keeps (0: none; the service keeps
    :data:`REMEMBER_LEADS`), so a lead scored again before the score history shows its
    previous scoring is not alerted twice."""

    def __init__(self, cfg: ProjectConfig, sender: AlertSender, *, remember: int = 0) -> None:
        self.sender = sender
        self.levels = alert_levels(cfg)
        self.buckets = cfg.scoring.buckets
        self.max_messages = cfg.alerts.max_messages
        self.drain_seconds = cfg.alerts.drain_seconds
        self.prefix = message_prefix(cfg)
        self.remember = remember
        self._last: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def for_config(cls, cfg: ProjectConfig, *, remember: int = 0, **sender: Any) -> LeadAlerts | None:
        """The lead alerts of ``cfg`` (``sender``: :class:`AlertSender` settings to replace);
        None without a webhook URL."""
        found = AlertSender.for_config(cfg, **sender)
        return None if found is None else cls(cfg, found, remember=remember)

    def entered(self, leads: Sequence[Mapping[str, Any]], id_key: str) -> list[Mapping[str, Any]]:
        """The leads (scored leads' fields, with their id under ``id_key``) that enter an alert
        level, in order; the remembered buckets are updated with every lead."""
        candidates = [r for r in leads if r.get("bucket") in self.levels]
        if candidates and any(GROUP_FIELD in r for r in candidates):  # the A/B test's control leads: never
            held_out = is_control([r.get(GROUP_FIELD) for r in candidates])
            candidates = [r for r, control in zip(candidates, held_out.tolist(), strict=True) if not control]
        before = [None] * len(candidates)
        if candidates:
            previous = np.array([_number(r.get("previous_score")) for r in candidates], dtype="float64")
            known = ~np.isnan(previous)
            names, _ = assign_buckets(np.where(known, previous, 0), self.buckets)
            before = [n if k else None for n, k in zip(names.tolist(), known.tolist(), strict=True)]
        if self.remember:
            with self._lock:
                for i, r in enumerate(candidates):
                    before[i] = self._last.get(str(r[id_key]), before[i])
                for r in leads:
                    lead = str(r[id_key])
                    self._last[lead] = str(r.get("bucket"))
                    self._last.move_to_end(lead)
                while len(self._last) > self.remember:
                    self._last.popitem(last=False)
        return [r for r, b in zip(candidates, before, strict=True) if b != r.get("bucket")]

    def messages(self, entered: Sequence[Mapping[str, Any]], id_key: str) -> list[str]:
        """One message per lead, or one per level beyond ``alerts.max_messages`` leads."""
        if len(entered) <= self.max_messages:
            out = []
            for r in entered:
                prev = _number(r.get("previous_score"))
                was = f"was {int(prev)}" if prev == prev else "first score"
                action = f": {r['recommended_action']}" if r.get("recommended_action") else ""
                out.append(f"{self.prefix}Lead {r[id_key]} entered {r['bucket']} (score {_shown(r.get('score'))}, {was}){action}")
            return out
        out = []
        for level in self.levels:
            hit = [r for r in entered if r.get("bucket") == level]
            if not hit:
                continue
            named = ", ".join(str(r[id_key]) for r in hit[:_NAMED])
            more = f" and {len(hit) - _NAMED} more" if len(hit) > _NAMED else ""
            action = f": {hit[0]['recommended_action']}" if hit[0].get("recommended_action") else ""
            out.append(f"{self.prefix}{len(hit)} leads entered {level}: {named}{more}{action}")
        return out

    def __call__(self, scored: pd.DataFrame | Sequence[Mapping[str, Any]], id_key: str) -> int:
        """Queue the messages for the leads of ``scored`` (scored leads' fields, as records or
        a frame of a scores file, the id under ``id_key``) that enter an alert level; returns
        how many entered. Never waits on the webhook."""
        if isinstance(scored, pd.DataFrame):
            if not self.remember:  # only the leads at an alert level matter
                scored = scored[scored["bucket"].isin(self.levels)]
            scored = scored.to_dict("records")
        entered = self.entered(scored, id_key)
        for text in self.messages(entered, id_key):
            self.sender.send(text)
        if entered:
            log.info("alerts: %d lead(s) entered %s", len(entered), "/".join(self.levels))
        return len(entered)

    def close(self, seconds: float | None = None) -> int:
        """Wait for the queued messages (default ``alerts.drain_seconds``), then stop."""
        return self.sender.close(self.drain_seconds if seconds is None else seconds)


def alert_fields(cfg: ProjectConfig) -> list[str]:
    """The fields of a scored lead the entry alerts read, its id first (the experiment's group
    too when ``experiment:`` is on: control leads are not alerted)."""
    return [cfg.data.id_column, *ALERT_FIELDS, *([GROUP_FIELD] if cfg.experiment.enabled else [])]


def read_alert_fields(cfg: ProjectConfig, path: str | os.PathLike[str]) -> pd.DataFrame:
    """The :func:`alert_fields` of a scores file (CSV or parquet, as ``score`` writes it); a
    one-line error naming the file and the missing columns."""
    return read_scores_file(path, cfg.data.id_column, columns=alert_fields(cfg), needed_for="the alerts")


@dataclass(frozen=True)
class JobAlerts:
    """What a scoring job's lead alerts came to: the leads that entered an alert level, and
    the webhook messages about them delivered and not delivered (refused, failed after the
    retries, dropped from a full queue, or still waiting at ``alerts.drain_seconds``)."""

    entered: int = 0
    delivered: int = 0
    undelivered: int = 0

    def text(self, levels: Sequence[str]) -> str:
        """One line for the operator: "3 lead(s) entered HOT; 1 message(s) delivered"."""
        line = f"{self.entered} lead(s) entered {' / '.join(levels)}; {self.delivered} message(s) delivered to the webhook"
        return line + (f", {self.undelivered} NOT delivered (see the log)" if self.undelivered else "")


def alert_scored_leads(
    cfg: ProjectConfig,
    scored: pd.DataFrame | Sequence[Mapping[str, Any]] | str | os.PathLike[str],
    *,
    id_key: str | None = None,
    **sender: Any,
) -> JobAlerts:
    """After a scoring job (``leadscoring score``, ``cycle``): alert the leads of ``scored``
    that entered an alert level, then wait for the messages up to ``alerts.drain_seconds``.
    ``scored``: a scores file (CSV or parquet, as ``score`` writes it), its rows as a frame,
    or scored leads as records; ``id_key``: their id field (default ``data.id_column``).
    Returns how many leads entered and how many messages reached the webhook (all 0 without
    a webhook URL)."""
    alerts = LeadAlerts.for_config(cfg, **sender)
    if alerts is None:
        return JobAlerts()
    key = id_key or cfg.data.id_column
    if isinstance(scored, str | os.PathLike):
        scored = read_alert_fields(cfg, scored)
    entered = 0
    try:
        entered = alerts(scored, key)
    finally:
        alerts.close()
    delivered = alerts.sender.delivered  # read once: a message still posting counts as not delivered
    return JobAlerts(entered, delivered, alerts.sender.sent - delivered)


# -- the monitoring report's alerts -------------------------------------------------------------


class _AlertLine(Protocol):
    kind: str
    message: str

    @property
    def key(self) -> str: ...


class _Report(Protocol):
    alerts: Sequence[_AlertLine]


def _alert_key(alert: _AlertLine) -> str:
    return hashlib.sha256(alert.key.encode()).hexdigest()[:24]


def _legacy_key(alert: _AlertLine) -> str:
    """How state files written before :attr:`Alert.key` named an alert (its kind and words)."""
    return hashlib.sha256(f"{alert.kind}\x1f{alert.message}".encode()).hexdigest()[:24]


def _sent(path: Path) -> dict[str, Any]:
    """The monitoring alerts sent so far (key -> when). A damaged state file is a one-line
    :class:`LeadDataError` naming it, before anything is sent: read as empty, it would send
    every alert again and overwrite it."""
    remedy = "mend it, or delete it to send every current monitoring alert once more"
    sent = read_json_object(path, "record of the monitoring alerts sent", remedy).get("monitoring", {})
    if not isinstance(sent, dict):
        raise LeadDataError(
            f"{path}: not a readable record of the monitoring alerts sent ('monitoring' is not an object); {remedy}"
        )
    return dict(sent)


def send_monitoring_alerts(cfg: ProjectConfig, report: _Report, **sender: Any) -> int:
    """Send each alert of a monitoring report (:func:`leadscoring.loop.monitoring.build_monitoring`)
    to the webhook, once: an alert already sent (the same :attr:`~leadscoring.loop.monitoring.Alert.key`:
    kind, variable, condition and cohorts, whatever its figures say now; recorded in
    ``paths.crm_state``/:data:`ALERTS_STATE`, rewritten atomically after each) is skipped.
    Posts now, each retried; returns how many were delivered (0 without a webhook URL or
    with ``alerts.monitoring: false``). ``sender``: :class:`AlertSender` settings to replace."""
    if not cfg.alerts.monitoring or not report.alerts:
        return 0
    poster = AlertSender.for_config(cfg, **sender)
    if poster is None:
        return 0
    path = cfg.path("crm_state") / ALERTS_STATE
    sent = _sent(path)
    prefix = message_prefix(cfg)
    delivered = 0
    try:
        for alert in report.alerts:
            key = _alert_key(alert)
            if key not in sent and _legacy_key(alert) in sent:  # sent by an older version: not again
                sent[key] = sent.pop(_legacy_key(alert))
                write_json({"monitoring": sent}, path)
            if key in sent:
                continue
            if poster.post(f"{prefix}Monitoring alert: {alert.message}"):
                sent[key] = {"kind": alert.kind, "sent_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
                delivered += 1
                try:
                    write_json({"monitoring": sent}, path)
                except OSError as exc:
                    raise LeadDataError(f"alerts: {path} not written ({exc}); the alerts sent may be sent again") from None
    finally:
        poster.close()
    if delivered:
        log.info("alerts: %d monitoring alert(s) sent to the webhook at %s", delivered, poster.where)
    return delivered
