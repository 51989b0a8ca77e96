"""Request checks of the scoring service (:mod:`leadscoring.serving.service`, its only user):
the bearer token, the body size and time limits, and validation errors as FastAPI's usual
422, kept small whatever the request (long inputs cut, at most :data:`MAX_ERRORS` errors)."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import os
from itertools import islice
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from starlette.requests import ClientDisconnect

from leadscoring.config import ConfigError

TOKEN_ENV = "LEADSCORING_API_TOKEN"

#: At most this many validation errors are reported in one 422 answer; the rest are counted.
MAX_ERRORS = 10
#: Longest text echoed in an error (an input, a field name, a context value), in characters.
MAX_TEXT = 100
#: Longest message of an error, in characters.
MAX_MESSAGE = 200
#: Longest echoed input of an error, in characters of JSON.
MAX_INPUT = 300
#: Items of a list or fields of an object echoed in an error's input.
MAX_ITEMS = 5

logger = logging.getLogger(__name__)


def api_token() -> str | None:
    """The bearer token required on scoring calls (``$LEADSCORING_API_TOKEN``), None when
    the variable is unset; ConfigError when it is set but empty or blank (that must not
    silently turn authentication off)."""
    token = os.environ.get(TOKEN_ENV)
    if token is not None and not token.strip():
        raise ConfigError(f"{TOKEN_ENV} is set but empty; set a token, or unset the variable to run without authentication")
    return token


def check_token(request: Request) -> None:
    """401 unless the request carries ``Authorization: Bearer <token>`` (the scheme in any
    case) when ``$LEADSCORING_API_TOKEN`` is set; a blank token refuses every call (the
    service refuses to start with one). Called before the body is read."""
    token = os.environ.get(TOKEN_ENV)
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
    same = hmac.compare_digest(given.strip().encode(), token.encode()) and bool(token.strip())
    if not same or scheme.casefold() != "bearer":
        raise HTTPException(status_code=401, detail="missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})


def _client(request: Request) -> str:
    """The client's address as host:port (``unknown client`` when the server does not say)."""
    return f"{request.client.host}:{request.client.port}" if request.client else "unknown client"


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, refused with 413 beyond ``limit`` bytes: on Content-Length before
    reading anything, else (a chunked body) as soon as the bytes read pass the limit.

    The whole body must arrive within ``timeout`` seconds, else 408 and the connection is
    closed; a client that disconnects mid-body is dropped. Either is logged as one line."""
    too_large = HTTPException(status_code=413, detail=f"request body over the limit of {limit} bytes")
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise HTTPException(status_code=400, detail="invalid Content-Length header") from None
        if declared > limit:
            raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        logger.warning("%s: request body not complete within %g s (%d bytes read); answered 408", _client(request), timeout, size)
        raise HTTPException(
            status_code=408,
            detail=f"request body not received within {timeout:g} s (limit: service.body_timeout)",
            headers={"Connection": "close"},
        ) from None
    except ClientDisconnect:
        logger.warning("%s: client disconnected before the request body was complete (%d bytes read)", _client(request), size)
        raise HTTPException(status_code=400, detail="client disconnected before the request body was complete") from None
    return b"".join(chunks)


def _cut(s: str, limit: int = MAX_TEXT) -> str:
    """``s``, or its first ``limit`` characters and its length when longer."""
    return s if len(s) <= limit else f"{s[:limit]}... ({len(s)} characters)"


def _short(v: Any, depth: int = 0) -> Any:
    """An error's input (or context value) JSON-ready and small: long text and bytes cut,
    at most :data:`MAX_ITEMS` items of a list or object two levels deep, a refused
    Infinity/NaN or a huge integer as text."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        if v.bit_length() <= 64:
            return v
        try:
            return _cut(str(v))
        except ValueError:  # beyond Python's digit limit for int -> str
            return f"an integer of {v.bit_length()} bits"
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, str):
        return _cut(v)
    if isinstance(v, bytes | bytearray):
        head = bytes(v[:MAX_TEXT]).decode("utf-8", "replace")
        return head if len(v) <= MAX_TEXT else f"{head}... ({len(v)} bytes)"
    if isinstance(v, dict):
        if depth >= 2:
            return f"an object of {len(v)} fields"
        fields = {_cut(str(k)): _short(x, depth + 1) for k, x in islice(v.items(), MAX_ITEMS)}
        if len(v) > MAX_ITEMS:
            fields["..."] = f"{len(v) - MAX_ITEMS} more fields"
        return fields
    if isinstance(v, list | tuple):
        if depth >= 2:
            return f"a list of {len(v)} items"
        items = [_short(x, depth + 1) for x in islice(v, MAX_ITEMS)]
        if len(v) > MAX_ITEMS:
            items.append(f"... {len(v) - MAX_ITEMS} more items")
        return items
    return _cut(str(v))


def _small_error(e: dict[str, Any]) -> dict[str, Any]:
    """One pydantic error made small: field names, message, input and context cut."""
    out = {
        **e,
        "loc": ("body", *(_cut(p) if isinstance(p, str) else p for p in e["loc"])),
        "msg": _cut(str(e.get("msg", "")), MAX_MESSAGE),
        "input": _short(e.get("input")),
    }
    if isinstance(out["input"], dict | list):  # a lead or a list of them: its JSON cut as text
        shown = json.dumps(out["input"], ensure_ascii=False, default=str)
        if len(shown) > MAX_INPUT:
            out["input"] = _cut(shown, MAX_INPUT)
    if "ctx" in e:
        out["ctx"] = {str(k): _short(x) for k, x in e["ctx"].items()}
    return out


def body_errors(errors: list[dict[str, Any]]) -> RequestValidationError:
    """pydantic errors as FastAPI's usual 422 (``loc`` prefixed with "body"), small whatever
    the request: at most :data:`MAX_ERRORS` errors (then one counting the rest), long
    inputs, field names and messages cut."""
    shown = [_small_error(e) for e in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        more = len(errors) - MAX_ERRORS
        shown.append({"type": "too_many_errors", "loc": ("body",), "msg": f"{more} more errors not shown", "input": None})
    return RequestValidationError(shown)
