"""The one way connectors talk to a CRM when pulling or checking: a JSON client over HTTP.

- Credentials: a header built from an environment variable (``Authorization: Bearer ...`` by
  default), set once on the client; never logged and never in an error message.
- Retries 5xx, 429, connection errors and timeouts with exponential backoff (tenacity).
  A ``Retry-After`` (seconds or an HTTP date) is honoured; one longer than ``max_backoff``
  stops at once with :class:`CrmError` ("the CRM asks to wait N s") instead of sleeping.
- Any other 4xx is final: :class:`CrmError` naming the CRM, the request and the status, with
  the start of the CRM's own message.
- A connector can make more answers final (``final=``, a :data:`FinalAnswer`): it sees every
  error answer first, and a reason it gives stops the request at once with a one-line
  :class:`CrmError` ``"<request>: <reason>"``, even for a 429 or 5xx that would be retried
  (e.g. a spent daily request limit: HubSpot's 429 ``policyName: DAILY``, Salesforce's 403
  ``REQUEST_LIMIT_EXCEEDED``, where waiting minutes helps nothing).
- A 2xx answer that is not JSON is :class:`CrmError` ("not JSON: a login page or proxy?").
- ``sleep`` and ``now`` can be replaced (a fake clock in tests).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from leadscoring.config import ConfigError

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})

#: A connector's test of an error answer (status 4xx/5xx): why it is final (the end of a
#: one-line message, e.g. "daily API request limit reached; not retried"), or None to handle
#: it as usual (retry 429 and 5xx, stop on other 4xx).
FinalAnswer = Callable[[httpx.Response], str | None]

_DEFAULT_PORTS = {"http": 80, "https": 443}


class CrmError(RuntimeError):
    """A CRM request that failed for good; the message is one line naming the CRM and what
    failed (lead and field where known), never a credential. ``status``: the CRM's HTTP
    status when it answered with an error (e.g. 404 for a lead it no longer has), else None."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def destination(url: str) -> str:
    """The normalised base URL that state is keyed by (scheme and host in lower case, default
    port and trailing slashes dropped); a URL that is not an http(s) base URL is a one-line
    :class:`ConfigError`."""
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


def retry_after_seconds(value: str | None, *, cap: float = math.inf, now: datetime | None = None) -> float | None:
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


class JsonClient:
    """A synchronous JSON client for one CRM (``name`` is how messages call it).

    ``transport`` lets tests answer from recorded responses (``httpx.MockTransport``)."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self.sleep, self.now = sleep, now
        self.requests = 0  # requests sent, retries included
        self._http = httpx.Client(headers=dict(headers or {}), timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> JsonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        """``path`` joined to the base URL (a full URL, e.g. a next-page link, is kept)."""
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        what: str = "",
        final: FinalAnswer | None = None,
    ) -> Any:
        """Send one request (retried as the module says) and return its parsed JSON answer
        (None for an empty 2xx answer). ``what`` names the request in errors, e.g.
        ``"lead 42"`` or ``"leads modified since 2026-01-01"``; ``final`` is the connector's
        test of error answers that no retry can help (:data:`FinalAnswer`)."""
        url = self.url(path)
        label = f"{self.name}: {method} {httpx.URL(url).path}" + (f" ({what})" if what else "")
        attempt = 0
        while True:
            attempt += 1
            self.requests += 1
            try:
                resp = self._http.request(method, url, params=params, json=json_body, headers=headers)
            except httpx.TransportError as exc:
                if attempt > self.retries:
                    raise CrmError(f"{label}: the CRM is unreachable ({type(exc).__name__}) after {attempt} attempts") from None
                self._wait(attempt, None, label, type(exc).__name__)
                continue
            why = final(resp) if final is not None and not resp.is_success else None
            if why:
                raise CrmError(f"{label}: {why}", resp.status_code)
            if resp.status_code in RETRY_STATUS:
                asked = retry_after_seconds(resp.headers.get("retry-after"), now=self.now())
                if asked is not None and asked > self.max_backoff:
                    raise CrmError(f"{label}: the CRM asks to wait {math.ceil(asked)} s (Retry-After); run it later")
                if attempt > self.retries:
                    raise CrmError(f"{label}: HTTP {resp.status_code} after {attempt} attempts{_detail(resp)}")
                self._wait(attempt, asked, label, f"HTTP {resp.status_code}")
                continue
            if not resp.is_success:
                raise CrmError(f"{label}: HTTP {resp.status_code}{_detail(resp)}", resp.status_code)
            if not resp.content:
                return None
            try:
                return resp.json()
            except ValueError:
                media = resp.headers.get("content-type", "no content type").split(";")[0]
                raise CrmError(f"{label}: HTTP {resp.status_code} answer is {media}, not JSON (a login page or proxy?)") from None

    def _wait(self, attempt: int, asked: float | None, label: str, why: str) -> None:
        wait = asked if asked is not None else min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        log.info("%s: %s; retrying in %.1f s", label, why, wait)
        self.sleep(wait)


def _detail(resp: httpx.Response) -> str:
    """The start of the CRM's own error message, on one line."""
    text = resp.text.strip()
    try:
        text = json.dumps(resp.json(), ensure_ascii=False)
    except ValueError:
        pass
    text = " ".join(text.split())[:200]
    return f": {text}" if text else ""
