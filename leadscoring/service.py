"""HTTP scoring service (FastAPI): the verified model loaded once, one lead or a batch per call.

The request schema is generated from the configuration: the id is required, every
configured column is optional (missing = unknown, which the model handles), numeric
fields must be numbers within the configured ranges, yes/no fields must use the
configured spellings, and unknown fields are rejected, so a typo is a 422 naming the
field rather than a silently ignored value. Unseen categories are scored.
"""


import hmac
import logging
import os
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from .config import ProjectConfig
from .preprocessing import ColumnBatch
from .scoring import Scorer

log = logging.getLogger(__name__)
TOKEN_ENV = "LEADSCORING_API_TOKEN"


class ScoreOut(BaseModel):
    lead_id: str
    probability: float
    score: int
    bucket: str
    recommended_action: str
    segment: str | None = None
    top_factors: str | None = None


def lead_model(cfg: ProjectConfig) -> type[BaseModel]:
    """A pydantic model of one lead in the raw column names."""
    d = cfg.data
    fields: dict[str, Any] = {d.id_column: (str | int, Field(..., description="lead id"))}
    for col in d.columns.numeric:
        lo, hi = d.ranges.get(col, (None, None))
        fields[col] = (float | None, Field(None, ge=lo, le=hi, description=f"numeric, range [{lo}, {hi}]"))
    for col in d.columns.categorical:
        fields[col] = (str | None, Field(None, description="category (unseen values are scored)"))
    allowed = [*d.yes_values, *d.no_values, *d.missing_values]
    for col in d.columns.yes_no:
        fields[col] = (str | None, Field(None, description=f"one of {allowed}"))
    known = {v.casefold() for v in allowed}

    def _check_yes_no(cls: type, v: str | None) -> str | None:
        if v is not None and v.strip().casefold() not in known:
            raise ValueError(f"must be one of {allowed}")
        return v

    validators = {"yes_no_values": field_validator(*d.columns.yes_no)(_check_yes_no)} if d.columns.yes_no else {}
    return create_model("Lead", __config__=ConfigDict(extra="forbid"), __validators__=validators, **fields)


async def _require_token(request: Request) -> None:  # async: a sync dependency would cost a thread hand-off
    token = os.environ.get(TOKEN_ENV)
    if not token:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise HTTPException(status_code=401, detail="missing or invalid bearer token",
                            headers={"WWW-Authenticate": "Bearer"})


def create_app(cfg: ProjectConfig, scorer: Scorer | None = None) -> FastAPI:
    """Build the app; the scorer (verified model) is loaded once here."""
    scorer = (scorer or Scorer.load(cfg)).limit_threads(1)
    loaded_at = datetime.now(UTC).isoformat(timespec="seconds")
    Lead = lead_model(cfg)
    id_col = cfg.data.id_column
    columns = [id_col, *cfg.data.columns.all]
    app = FastAPI(title="leadscoring", version=scorer.version,
                  description="Conversion probability, 0-100 score, bucket, action, segment and reasons per lead.")

    numeric = set(cfg.data.columns.numeric)

    def _score(leads: list[BaseModel]) -> list[dict[str, Any]]:
        # pydantic has validated every field: build the column batch directly (no DataFrame).
        rows = [lead.model_dump() for lead in leads]
        batch = ColumnBatch()
        for col in columns:
            values = [r.get(col) for r in rows]
            if col == id_col:
                batch[col] = np.array([str(v) for v in values], dtype=object)
            elif col in numeric:
                batch[col] = np.array([np.nan if v is None else v for v in values], dtype=float)
            else:
                batch[col] = np.array(values, dtype=object)
        out = scorer.score_columns(batch)
        out["lead_id"] = out.pop(id_col)
        keys = list(out)
        return [{k: (v.item() if hasattr(v, "item") else v) for k, v in zip(keys, vals, strict=True)}
                for vals in zip(*(out[k] for k in keys), strict=True)]

    _score([Lead(**{id_col: "warm-up"})])  # first call pays one-off set-up costs here, not on a client's lead

    # /score and /health are short and CPU-bound: they run on the event loop (no thread
    # hand-off), and /score returns its JSON directly (response_model documents it; the
    # values are built from validated input, so validating them again would only cost time).
    # /score/batch may be long: it runs in the thread pool so /health stays responsive.
    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model_version": scorer.version, "model_name": scorer.manifest.get("model_name"),
                "model_created_at": scorer.manifest.get("created_at"), "loaded_at": loaded_at,
                "segments": scorer.segmenter is not None}

    # The single-lead route parses and validates the body in one pydantic call (JSON straight
    # to the model, in Rust) rather than through FastAPI's parameter machinery: a third of a
    # millisecond per call. Errors are FastAPI's usual 422 (``loc`` = ["body", field]).
    lead_body = {"required": True, "content": {"application/json": {"schema": Lead.model_json_schema()}}}

    @app.post("/score", response_model=ScoreOut, openapi_extra={"requestBody": lead_body},
              responses={422: {"description": "Validation Error"}})
    async def score(request: Request) -> JSONResponse:
        await _require_token(request)
        try:
            lead = Lead.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]) from None
        t0 = time.perf_counter()
        body = _score([lead])[0]
        return JSONResponse(body, headers={"Server-Timing": f"score;dur={(time.perf_counter() - t0) * 1000:.2f}"})

    @app.post("/score/batch", response_model=list[ScoreOut], dependencies=[Depends(_require_token)])
    def score_batch(leads: list[Lead]) -> list[dict[str, Any]]:  # type: ignore[valid-type]
        if not leads:
            return []
        return _score(leads)

    @app.exception_handler(ValueError)
    async def _bad_value(_: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    return app


def serve(cfg: ProjectConfig, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run the app with uvicorn (``workers`` > 1 starts separate processes)."""
    import uvicorn

    if workers > 1:
        os.environ["LEADSCORING_CONFIG"] = str(cfg.source)
        uvicorn.run("leadscoring.service:app_from_env", factory=True, host=host, port=port, workers=workers)
    else:
        uvicorn.run(create_app(cfg), host=host, port=port)


def app_from_env() -> FastAPI:
    """App factory for multi-worker uvicorn (configuration from ``$LEADSCORING_CONFIG``)."""
    from .config import load_config

    return create_app(load_config())
