"""HTTP scoring service (FastAPI): the verified model loaded once, one lead or a batch per call.

The request schema is generated from the configuration: the id is required, every
configured column is optional (missing = unknown, which the model handles), numeric
fields must be numbers within the configured ranges, yes/no fields must use the
configured spellings, and unknown fields are rejected, so a typo is a 422 naming the
field rather than a silently ignored value. Unseen categories are scored.

The request model is the one schema the CLI applies to files
(:class:`leadscoring.ingest.schema.LeadSchema`): an id is a non-blank string (kept as
given, surrounding spaces removed as in files) or an integer, never ``true``/``false``;
numbers are finite (no ``Infinity``, ``NaN`` or ``"inf"``), not booleans, in the
configured range, and text numbers follow the export's decimal mark; the ids of one batch
are distinct. The bearer token is checked before the body is read (an empty
``$LEADSCORING_API_TOKEN`` is refused at start-up; none set is a warning: no authentication),
and the body size and the batch length are bounded (``service`` section of the
configuration → 413). A 422 stays small whatever the body (long inputs cut, at most ten
errors). Slow clients are timed out: request headers within ``service.header_timeout``
seconds (else the connection is closed), the whole body within ``service.body_timeout``
(else 408 and the connection closed); each is logged as one line.

A newly promoted model set is picked up without a restart (:mod:`leadscoring.serving.reload`,
every ``service.reload_seconds``): loaded, verified and smoke-tested beside the serving one,
then swapped in; a set that fails is refused and the old one goes on. Every answer carries
the ``X-Model-Version`` header, and scored leads their ``model_version``: the set that scored
them (a request finishes on the set it started with). ``/health`` shows the version, when it
was loaded and the last set refused, with why.

Every lead scored is kept in the score history with its inputs as validated, appended in the
background every ``service.history_flush_seconds`` (:mod:`leadscoring.serving.recorder`):
a request only hands its leads over. With an ``alerts:`` webhook, a lead entering an alert
level is alerted (:mod:`leadscoring.serving.alerts`): the message is queued and posted by a
background thread, after the answer, whatever the webhook does.

"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from leadscoring.config import ProjectConfig
from leadscoring.events.live import LiveEvents
from leadscoring.features.columns import ColumnBatch
from leadscoring.ingest.schema import LeadSchema
from leadscoring.scored_lead import ID_FIELD, ScoredLead
from leadscoring.serving.alerts import REMEMBER_LEADS, LeadAlerts
from leadscoring.serving.outputs import json_records
from leadscoring.serving.recorder import HistoryRecorder
from leadscoring.serving.reload import ModelReloader, ScoreLeads, ServedSet, now_iso, smoke_test
from leadscoring.serving.request_checks import TOKEN_ENV as TOKEN_ENV
from leadscoring.serving.request_checks import api_token, body_errors, check_token, read_body
from leadscoring.serving.scorer import Scorer, utc_now

#: Leads scored at a time within one /score/batch request (bounds the intermediate arrays).
BATCH_SLICE = 1_000

#: The header naming the model version that answered.
VERSION_HEADER = "X-Model-Version"

#: Keeps one call's scorings: the leads as validated, and their answers.
Record = Callable[[list[dict[str, Any]], list[dict[str, Any]]], None]

logger = logging.getLogger(__name__)


def lead_model(cfg: ProjectConfig) -> type[BaseModel]:
    """A pydantic model of one lead in the raw column names: the schema the CLI applies to
    files (:class:`~leadscoring.ingest.schema.LeadSchema`), for one JSON request."""
    return LeadSchema(cfg).request_model()


def _lead_scorer(cfg: ProjectConfig, scorer: Scorer, record: Record | None = None) -> ScoreLeads:
    """A function scoring validated leads: one JSON-ready dict per lead, in order; each call's
    leads (as validated) and answers are handed to ``record`` (the score history's recorder).

    With events configured, a lead sent without any behavioural feature gets them computed
    from its visitor's events as of the scoring time (the batch leaves those columns out, so
    the scorer looks them up); a lead sent with some is scored on what it sent. A call mixing
    both is scored in two groups, at the same time."""
    id_col = cfg.data.id_column
    visitor = LeadSchema(cfg).visitor_column
    columns = [id_col, *([visitor] if visitor else []), *cfg.model_data.columns.all]
    numeric = set(cfg.model_data.columns.numeric)
    event_columns = set(cfg.event_columns)

    def _batch(rows: list[dict[str, Any]], computed: bool) -> ColumnBatch:
        # pydantic has validated every field: build the column batch directly (no DataFrame).
        batch = ColumnBatch()
        for col in columns:
            if computed and col in event_columns:
                continue
            values = [r.get(col) for r in rows]
            if col == id_col:
                batch[col] = np.array([str(v) for v in values], dtype=object)
            elif col in numeric:
                batch[col] = np.array([np.nan if v is None else v for v in values], dtype=float)
            else:
                batch[col] = np.array(values, dtype=object)
        return batch

    def _score(leads: list[BaseModel]) -> list[dict[str, Any]]:
        rows = [lead.model_dump() for lead in leads]
        sent = [any(r.get(c) is not None for c in event_columns) for r in rows]
        if all(sent) or not any(sent):
            out = json_records(scorer.score_columns(_batch(rows, not any(sent))), rename={id_col: ID_FIELD})
        else:
            scored_at, out = utc_now(), [{} for _ in rows]
            for group in (True, False):
                where = [i for i, s in enumerate(sent) if s == group]
                batch = _batch([rows[i] for i in where], computed=not group)
                for i, rec in zip(
                    where, json_records(scorer.score_columns(batch, scored_at=scored_at), rename={id_col: ID_FIELD}), strict=True
                ):
                    out[i] = rec
        if record is not None:
            record(rows, out)
        return out

    return _score


def _batch_scorer(Lead: type[BaseModel], id_col: str, max_batch: int, score: ScoreLeads) -> Callable[[bytes], bytes]:
    """A function that parses, checks and scores one /score/batch body."""
    LeadBatch = TypeAdapter(Annotated[list[Lead], Field(max_length=max_batch)])  # type: ignore[valid-type]

    def _score_batch(body: bytes) -> bytes:
        """Parse, check and score one batch body (runs in the thread pool); JSON bytes out."""
        try:
            leads = LeadBatch.validate_json(body)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            if any(e["type"] == "too_long" and not e["loc"] for e in errors):
                raise HTTPException(
                    status_code=413, detail=f"more than {max_batch} leads in one batch; split it (limit: service.max_batch)"
                ) from None
            raise body_errors(errors) from None
        first_at: dict[str, int] = {}
        duplicates = []
        for i, lead in enumerate(leads):
            lead_id = getattr(lead, id_col)
            if lead_id in first_at:
                duplicates.append(
                    {
                        "type": "duplicate_id",
                        "loc": (i, id_col),
                        "input": lead_id,
                        "msg": f"duplicate id {lead_id!r} (also at index {first_at[lead_id]})",
                    }
                )
            else:
                first_at[lead_id] = i
        if duplicates:
            raise body_errors(duplicates)
        scored: list[dict[str, Any]] = []
        for start in range(0, len(leads), BATCH_SLICE):
            scored.extend(score(leads[start : start + BATCH_SLICE]))
        return json.dumps(scored, ensure_ascii=False, separators=(",", ":")).encode()

    return _score_batch


# /score and /health are short and CPU-bound: they run on the event loop (no thread
# hand-off), and /score returns its JSON directly (response_model documents it; the
# values are built from validated input, so validating them again would only cost time).
# /score/batch may be long: its parsing and scoring run in the thread pool so /health
# and single-lead calls stay responsive.
def _add_health_route(app: FastAPI, reloader: ModelReloader, reload_seconds: float) -> None:
    @app.get("/health")
    async def health() -> dict[str, Any]:
        served = reloader.current
        scorer = served.scorer
        return {
            "status": "ok",
            "model_version": served.version,
            "model_name": scorer.manifest.get("model_name"),
            "model_created_at": scorer.manifest.get("created_at"),
            "loaded_at": served.loaded_at,
            "segments": scorer.segmenter is not None,
            "reload_seconds": reload_seconds,
            "last_refused": reloader.refused.as_dict() if reloader.refused else None,
        }


# Both scoring routes read the body themselves rather than through FastAPI's parameter
# machinery: the token is checked before a byte of the body is read, the body size is
# bounded, and the single-lead route parses and validates in one pydantic call (JSON
# straight to the model, in Rust): a third of a millisecond per call. Errors are
# FastAPI's usual 422 (``loc`` = ["body", field], or ["body", index, field] in a batch).
def _add_scoring_routes(app: FastAPI, Lead: type[BaseModel], limits: tuple[int, int, float], reloader: ModelReloader) -> None:
    """/score and /score/batch; ``limits``: leads per batch, body bytes, seconds for a body.
    Each request reads the served set once (``reloader.current``) and is scored with it."""
    max_batch, max_body, body_timeout = limits
    lead_schema = Lead.model_json_schema()
    lead_body = {"required": True, "content": {"application/json": {"schema": lead_schema}}}
    batch_body = {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "array", "items": lead_schema, "maxItems": max_batch, "title": "Leads"}}
        },
    }
    errors = {
        401: {"description": "Missing or invalid bearer token"},
        408: {"description": "Request body not received within the configured time"},
        413: {"description": "Request body or batch over the configured limit"},
        422: {"description": "Validation Error"},
    }

    @app.post("/score", response_model=ScoredLead, openapi_extra={"requestBody": lead_body}, responses=errors)
    async def score(request: Request) -> JSONResponse:
        check_token(request)
        body = await read_body(request, max_body, body_timeout)
        try:
            lead = Lead.model_validate_json(body)
        except ValidationError as exc:
            raise body_errors(exc.errors(include_url=False)) from None
        served = reloader.current
        t0 = time.perf_counter()
        out = served.score_one([lead])[0]
        timing = f"score;dur={(time.perf_counter() - t0) * 1000:.2f}"
        return JSONResponse(out, headers={"Server-Timing": timing, VERSION_HEADER: served.version})

    @app.post("/score/batch", response_model=list[ScoredLead], openapi_extra={"requestBody": batch_body}, responses=errors)
    async def score_batch(request: Request) -> Response:
        check_token(request)
        body = await read_body(request, max_body, body_timeout)
        served = reloader.current
        return Response(
            await run_in_threadpool(served.score_many, body),
            media_type="application/json",
            headers={VERSION_HEADER: served.version},
        )


async def _bad_value(_: Request, exc: ValueError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": str(exc)})


class VersionHeader:
    """ASGI middleware: every answer that does not name its model version yet (errors,
    ``/health``) gets the served one in ``X-Model-Version``; scoring answers set their own
    (the set that scored them, which a reload during the request does not change)."""

    def __init__(self, app: ASGIApp, reloader: ModelReloader) -> None:
        self.app = app
        self.reloader = reloader

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-model-version" for k, _ in headers):
                    headers.append((b"x-model-version", self.reloader.current.version.encode("latin-1")))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_version)


def _set_builder(
    cfg: ProjectConfig, Lead: type[BaseModel], record: Record | None = None
) -> Callable[[Scorer, Scorer | None], ServedSet]:
    """A function making the served set of a loaded scorer (``previous``: the set it replaces,
    whose score history and live events it shares), after a smoke prediction on a one-lead
    request (every column unknown) through the same scoring function requests use, less the
    recording: the first call also pays one-off set-up costs here, not on a client's lead,
    and the smoke lead is never recorded. Requests' scorings go to ``record``."""
    id_col = cfg.data.id_column
    max_batch = cfg.service.max_batch
    warm_up = Lead(**{id_col: "warm-up"})

    def build(scorer: Scorer, previous: Scorer | None = None) -> ServedSet:
        scorer.limit_threads(1)
        if previous is not None:
            scorer.history, scorer.live_events = previous.history, previous.live_events
        elif cfg.events is not None and scorer.live_events is None:
            scorer.live_events = LiveEvents(cfg)
        plain = _lead_scorer(cfg, scorer)
        smoke_test(ServedSet(scorer, plain, _batch_scorer(Lead, id_col, max_batch, plain), now_iso()), warm_up)
        score_one = plain if record is None else _lead_scorer(cfg, scorer, record)
        return ServedSet(scorer, score_one, _batch_scorer(Lead, id_col, max_batch, score_one), now_iso())

    return build


def _on_scored(recorder: HistoryRecorder | None, alerts: LeadAlerts | None) -> Record | None:
    """What happens to each call's scorings besides the answer: the score history's recorder
    takes them, and the leads entering an alert level are queued for the webhook; neither
    waits on a disk or the network."""
    if alerts is None:
        return recorder.record if recorder is not None else None

    def on_scored(rows: list[dict[str, Any]], answers: list[dict[str, Any]]) -> None:
        if recorder is not None:
            recorder.record(rows, answers)
        alerts(answers, ID_FIELD)

    return on_scored


def create_app(cfg: ProjectConfig, scorer: Scorer | None = None) -> FastAPI:
    """Build the app; the scorer (verified model) is loaded here, and with events configured,
    the event store's events (:class:`LiveEvents`, unless the scorer has them). While the app
    runs (its lifespan), a background task checks every ``service.reload_seconds`` for a newly
    promoted set in the scorer's models folder (``app.state.reloader``, see
    :mod:`leadscoring.serving.reload`). What it scores is appended to the score history in
    the background, each lead with its inputs (:class:`~leadscoring.serving.recorder.HistoryRecorder`,
    ``app.state.history_recorder``; none with ``service.history_flush_seconds: 0``); the
    app's shutdown appends what waits. With an ``alerts:`` webhook, the leads entering an
    alert level are queued for it (``app.state.alerts``, a
    :class:`~leadscoring.serving.alerts.LeadAlerts`); the shutdown sends what is queued.

    ConfigError when ``$LEADSCORING_API_TOKEN`` is set but empty; a warning when it is unset
    (no authentication)."""
    if api_token() is None:
        logger.warning("%s is not set: authentication is off, anyone who can reach the port can score leads", TOKEN_ENV)
    scorer = scorer or Scorer.load(cfg)
    Lead = lead_model(cfg)
    max_body = int(cfg.service.max_body_mb * 1024 * 1024)
    flush = cfg.service.history_flush_seconds
    recorder = HistoryRecorder(cfg, flush, id_field=ID_FIELD) if flush > 0 else None
    alerts = LeadAlerts.for_config(cfg, remember=REMEMBER_LEADS)
    build = _set_builder(cfg, Lead, _on_scored(recorder, alerts))
    folder = scorer.models_dir or cfg.path("models_dir")
    reloader = ModelReloader(folder, build(scorer), lambda path: Scorer.load(cfg, path, check_experiment=False), build)
    every = cfg.service.reload_seconds

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watcher = asyncio.create_task(reloader.watch(every)) if every > 0 else None
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if recorder is not None:  # a clean stop appends what waits
                await run_in_threadpool(recorder.close)
            if alerts is not None:  # and sends the alerts queued (for alerts.drain_seconds at most)
                await run_in_threadpool(alerts.close)

    app = FastAPI(
        title="leadscoring",
        version=scorer.version,
        description="Conversion probability, 0-100 score, bucket, action, segment and reasons per lead.",
        lifespan=lifespan,
    )
    app.state.reloader = reloader
    app.state.history_recorder = recorder
    app.state.alerts = alerts
    _add_health_route(app, reloader, every)
    _add_scoring_routes(app, Lead, (cfg.service.max_batch, max_body, cfg.service.body_timeout), reloader)
    app.add_exception_handler(ValueError, _bad_value)
    app.add_middleware(VersionHeader, reloader=reloader)
    if every > 0:
        logger.info("hot reload: checking %s every %g s for a newly promoted model set", Path(folder), every)
    return app


class HeaderTimeoutProtocol(AutoHTTPProtocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for request headers: a connection must send
    a request's headers within ``timeout_keep_alive`` seconds (``service.header_timeout``) of
    connecting or of the previous answer, else it is closed (one log line when it had sent part
    of them; silently when idle, as uvicorn closes an idle kept-alive connection). uvicorn alone
    never times out a connection that sends part of its headers and holds. The body has its
    own deadline (``service.body_timeout``, in :func:`read_body`)."""

    _header_timer: asyncio.TimerHandle | None = None
    _partial = False  # bytes received since the timer was armed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        self._partial = True
        super().data_received(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._partial = False
        if not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self.timeout_keep_alive, self._headers_late)

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return  # closed, or a request's headers arrived: its body has its own deadline
        if self._partial:
            who = f"{self.client[0]}:{self.client[1]}" if self.client else "unknown client"
            logger.warning("%s: request headers not complete within %g s; connection closed", who, self.timeout_keep_alive)
        self.transport.close()


def server_options(cfg: ProjectConfig) -> dict[str, Any]:
    """uvicorn settings of the service beyond host, port and workers: the header deadline
    (``service.header_timeout``, also the idle time of a kept-alive connection)."""
    return {"http": HeaderTimeoutProtocol, "timeout_keep_alive": cfg.service.header_timeout}


def serve(cfg: ProjectConfig, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run the app with uvicorn (``workers`` > 1 starts separate processes). ConfigError,
    before anything starts, when ``$LEADSCORING_API_TOKEN`` is set but empty."""
    import uvicorn

    api_token()
    if workers > 1:
        os.environ["LEADSCORING_CONFIG"] = str(cfg.source)
        uvicorn.run(
            "leadscoring.serving.service:app_from_env", factory=True, host=host, port=port, workers=workers, **server_options(cfg)
        )
    else:
        uvicorn.run(create_app(cfg), host=host, port=port, **server_options(cfg))


def app_from_env() -> FastAPI:
    """App factory for multi-worker uvicorn (configuration from ``$LEADSCORING_CONFIG``)."""
    from leadscoring.config import load_config

    return create_app(load_config())
