"""Request checks of the scoring service (:mod:`leadscoring.serving.service`, its only user):
the bearer token, the body size limit, and validation errors as FastAPI's usual 422."""

from __future__ import annotations

import hmac
import math
import os
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError

TOKEN_ENV = "LEADSCORING_API_TOKEN"


def check_token(request: Request) -> None:
    """401 unless the request carries ``Authorization: Bearer <token>`` (the scheme in any
    case) when ``$LEADSCORING_API_TOKEN`` is set. Called before the body is read."""
    token = os.environ.get(TOKEN_ENV)
    if not token:
        return
    scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
    same = hmac.compare_digest(given.strip().encode(), token.encode())
    if not same or scheme.casefold() != "bearer":
        raise HTTPException(status_code=401, detail="missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 beyond ``limit`` bytes: on Content-Length before
    reading anything, else (a chunked body) as soon as the bytes read pass the limit."""
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
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _json_safe(v: Any) -> Any:
    """An error's input made JSON-serialisable (a refused Infinity/NaN is echoed as text)."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    return v


def body_errors(errors: list[dict[str, Any]]) -> RequestValidationError:
    """pydantic errors as FastAPI's usual 422 (``loc`` prefixed with "body")."""
    return RequestValidationError([{**e, "loc": ("body", *e["loc"]), "input": _json_safe(e.get("input"))} for e in errors])
