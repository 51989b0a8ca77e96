"""``leadscoring cycle``: the nightly loop, one step after the other.

1. **pull** — the CRM's status changes into the outcome history (:func:`~leadscoring.crm.pull.pull_outcomes`).
2. **retrain** — when due (:func:`~leadscoring.loop.maturity.retrain_due`): a challenger is
   trained and measured against the champion on the newest matured cohort, and promoted or
   not by the rule of :func:`~leadscoring.loop.retrain.decide`; the decision, its reason and
   both models' figures go to the run log. Not due: skipped, saying why. Due, but the matured
   outcomes hold too few leads to learn from (never scored, or scored only after their
   outcome): skipped, saying so, and the attempt counts (the next one waits for new matured
   outcomes, or, due by the model's age, is tried again the next night).
3. **rescore** — the open leads of ``--leads`` (the client's nightly export; leads converted,
   lost or deleted in the outcome history are left out) that the cycle has not scored yet,
   whose inputs changed since the cycle last scored them (a digest of the export's columns),
   or whose models changed (the scoring or segment model: a promotion, a rollback, a
   production run). Reasons, fit and engagement scores (most of a scoring's time) are computed
   only when ``scoring.crm_fields`` pushes one of them. The rescored leads that entered an alert
   level are alerted (``alerts:`` webhook, as ``leadscoring score`` does). With an ``events:``
   section every open lead is rescored (behaviour changes without the export changing). The
   latest scores of the open leads are kept in ``paths.crm_state/cycle_scores.parquet`` (with
   the digest of the inputs each was scored with); the rescored leads are appended to the
   score history.
4. **push** — the open leads' latest scores to the CRM (:func:`~leadscoring.crm.push.push_scores`,
   state ``paths.crm_state/push-state.jsonl``, as ``leadscoring push``): the push state skips
   every lead whose payload the CRM already accepted, so only changed scores are sent (fields
   that change at every scoring, such as ``scored_at``, make every rescored lead a change:
   leave them out of ``scoring.crm_fields`` to send only changed scores).
5. **monitoring** — :func:`monitoring_step`: the monitoring report (``leadscoring monitor``),
   ``05_Resultados/monitoring.html`` and ``monitoring.json``.

At the end the tracking workbook (``01_Documentos/tracking.xlsx``) is rewritten from the run log.

**The run log.** Each step appends one line to ``01_Documentos/run_log.jsonl``
(``{"cycle", "step", "status", "at", "seconds", "summary", "figures"}``, status ``ok``,
``skipped``, ``failed`` or ``interrupted``), and the cycle a last line (``"step": "cycle"``).

**Failures.** A failed step is logged with its one-line error and the cycle exits non-zero. The
steps after it still run unless they need it (:data:`NEEDS`): a failed pull skips the retrain;
a failed rescore skips the push; a failed retrain leaves the champion in
place, and the open leads are rescored and pushed with it. Every step writes only once its work
is done, each file atomically, in an order that a next cycle completes: the pull writes its
history before its watermark; a promotion archives the current set before replacing it; the
rescore appends the rescored leads to the score history before it writes the open leads'
latest scores (stopped in between, the next cycle scores those leads again); the push
records each lead once the CRM accepted it. So a failure leaves nothing half-promoted and no
watermark past unprocessed data, and the next cycle ends where one uninterrupted cycle would
have.

**SIGTERM.** While a step computes, SIGTERM stops the cycle at once (logged ``interrupted``,
exit 143); while a step writes (a promotion or a retraining attempt's record, the rescored
leads' history, alerts — at most ``alerts.drain_seconds`` — and scores) it is deferred until
the writes are complete. One cycle at a time (:data:`CYCLE_LOCK`): a second one exits with
:data:`EXIT_LOCKED` (75, ``EX_TEMPFAIL``: try again later) and does nothing.

**Dry run.** Every step says what it would do and writes nothing (no lock, no log line): the
pull reads and maps, the retrain says whether it is due and why, the rescore scores with the
current model, the push counts the leads it would send.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscoring.artifacts import SCORE_MODEL, SEGMENT_MODEL, ModelIntegrityError, read_manifest
from leadscoring.config import ConfigError, ProjectConfig
from leadscoring.crm import auth_headers
from leadscoring.crm.http import CrmError
from leadscoring.crm.outcomes import latest_rows, read_outcome_history
from leadscoring.errors import LeadDataError, OutputPathError, first_line, one_line
from leadscoring.io import append_json_line, atomic_path, exclusive_lock, read_json_object, write_json
from leadscoring.termination import Terminated, Termination
from leadscoring.tracking import run_log_path

log = logging.getLogger(__name__)

#: The steps, in order.
STEPS = ("pull", "retrain", "rescore", "push", "monitoring")
#: A step is skipped when the step it needs failed.
NEEDS = {"retrain": "pull", "push": "rescore"}
#: The cycle's lock, its state and the open leads' latest scores, in ``paths.crm_state``.
CYCLE_LOCK = ".cycle.lock"
CYCLE_STATE = "cycle_state.json"
CYCLE_SCORES = "cycle_scores.parquet"
#: The export's rows the last rescoring set aside (``scoring.bad_rows: set_aside``), in the state folder.
CYCLE_REJECTED = "rejected_rows.csv"
#: The columns of :data:`CYCLE_SCORES` beside the scores: the digest of the inputs a lead was
#: scored with, and the model set that scored it (scoring and segment models' hashes).
DIGEST = "inputs_digest"
MODEL_SET_COLUMN = "model_set"
#: Exit codes of ``leadscoring cycle``.
EXIT_OK, EXIT_FAILED, EXIT_LOCKED, EXIT_TERMINATED = 0, 1, 75, 143
#: A cycle lock older than this (seconds) is taken to be left by a cycle that died.
STALE_CYCLE_SECONDS = 12 * 60 * 60
#: Test hook: the point (a step's name, or ``STEP:write`` where a step starts writing) at
#: which the cycle sends itself SIGTERM, to stop it there deterministically.
SIGTERM_AT_ENV = "LEADSCORING_CYCLE_SIGTERM_AT"
#: A step's error in the run log: its whole message on one line, at most this many characters.
LINE_LIMIT = 1000


class CycleInterrupted(Terminated):
    """The cycle was terminated (SIGTERM)."""


@dataclass
class StepResult:
    """One step: its status (ok, skipped, failed, interrupted, dry-run), one line saying what
    it did (or would do, or why it failed), and its figures for the run log."""

    step: str
    status: str
    summary: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def line(self) -> str:
        return f"{self.step:<10} {self.status:<11} {self.seconds:6.1f}s  {self.summary}"


@dataclass
class CycleResult:
    """A cycle: its id, status (ok, failed, interrupted, dry-run) and steps."""

    cycle_id: str
    status: str
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return {"failed": EXIT_FAILED, "interrupted": EXIT_TERMINATED}.get(self.status, EXIT_OK)

    def __str__(self) -> str:
        lines = [s.line() for s in self.steps]
        lines.append(f"cycle {self.cycle_id}: {self.status} in {self.seconds:.0f}s")
        return "\n".join(lines)


@dataclass
class _Context:
    """What the steps share."""

    cfg: ProjectConfig
    leads: Path
    now: datetime
    cycle_id: str
    dry_run: bool
    progress: bool
    term: Termination
    history: pd.DataFrame | None = None  # the outcome history (with a dry-run pull's rows)
    open_leads: pd.DataFrame | None = None  # the export's open leads, validated
    scores: Any = None  # the open leads' latest scores (an Arrow table), what the push sends
    known: dict[str, dict[str, Any]] = field(default_factory=dict)  # a step's figures so far, logged if it fails

    def state_dir(self) -> Path:
        return self.cfg.path("crm_state")

    @contextlib.contextmanager
    def writing(self, step: str) -> Iterator[None]:
        """A step's writes: SIGTERM waits until they are complete, then stops the cycle."""
        with self.term.deferred():
            checkpoint(f"{step}:write")
            yield
        if self.term.pending:
            raise CycleInterrupted(f"terminated by SIGTERM during the {step} step's writes; they were completed first")


def checkpoint(point: str) -> None:
    """The test hook (:data:`SIGTERM_AT_ENV`): SIGTERM to this process at ``point``."""
    if os.environ.get(SIGTERM_AT_ENV) == point:
        log.warning("%s=%s: sending SIGTERM to this cycle", SIGTERM_AT_ENV, point)
        os.kill(os.getpid(), signal.SIGTERM)


# -- the steps ---------------------------------------------------------------------------------


def pull_step(ctx: _Context) -> StepResult:
    """The CRM's changes into the outcome history (in a dry run: read and mapped only)."""
    from leadscoring.crm.pull import pull_outcomes

    summary = pull_outcomes(ctx.cfg, now=lambda: ctx.now, dry_run=ctx.dry_run, progress=ctx.progress)
    ctx.history = summary.outcome_history  # with a dry run's rows, which it did not write
    figures = {
        "read": summary.read,
        "appended": summary.appended,
        "outcomes": summary.outcomes,
        "appended_outcomes": summary.appended_outcomes,
        "unmapped": sum(summary.unmapped.values()),
        "watermark": summary.watermark.isoformat() if summary.watermark else None,
    }
    return StepResult("pull", "dry-run" if ctx.dry_run else "ok", str(summary), figures)


_STATE_REMEDY = "delete it (the next retraining may come sooner)"


def _read_state(ctx: _Context) -> dict[str, Any]:
    return read_json_object(ctx.state_dir() / CYCLE_STATE, "cycle state", _STATE_REMEDY)


def _last_attempt(ctx: _Context) -> datetime | None:
    """The last retraining attempt's time in the cycle state (None: none yet); one that is not
    an ISO 8601 time is a one-line error naming the file."""
    last = _read_state(ctx).get("last_retrain_at")
    if last is None:
        return None
    try:
        if not isinstance(last, str):
            raise ValueError
        return datetime.fromisoformat(last)
    except ValueError:
        raise LeadDataError(
            f"{ctx.state_dir() / CYCLE_STATE}: last_retrain_at is {last!r}, not an ISO 8601 time; {_STATE_REMEDY}"
        ) from None


def _record_attempt(ctx: _Context) -> None:
    """The retraining attempt's time, what the next ``due`` counts new outcomes from."""
    write_json({"last_retrain_at": ctx.now.isoformat(), "cycle": ctx.cycle_id}, ctx.state_dir() / CYCLE_STATE)


def retrain_step(ctx: _Context) -> StepResult:
    """Retrain when due (see :mod:`leadscoring.loop.maturity`); the decision and its figures."""
    from leadscoring.loop.maturity import matured_outcomes, retrain_due

    cfg = ctx.cfg
    manifest = read_manifest(cfg.path("models_dir") / SCORE_MODEL)
    history = ctx.history if ctx.history is not None else read_outcome_history(cfg.path("outcome_history"))
    matured = matured_outcomes(cfg, ctx.now, history)
    due = retrain_due(cfg, manifest, matured, ctx.now, _last_attempt(ctx))
    figures = ctx.known["retrain"] = due.figures()
    if not due.due:
        return StepResult("retrain", "skipped", due.reason, figures)
    if ctx.dry_run:
        return StepResult("retrain", "dry-run", f"would retrain: due: {due.reason}", figures)
    from leadscoring.loop.retrain import NotEnoughOutcomes, retrain

    log.info("cycle %s: retraining: %s", ctx.cycle_id, due.reason)

    @contextlib.contextmanager
    def writes() -> Iterator[None]:
        # The retraining's writes, then the attempt's time (what `due` counts from), all or none.
        with ctx.writing("retrain"):
            yield
            _record_attempt(ctx)

    try:
        result = retrain(cfg, leads=ctx.leads, now=ctx.now, writing=writes, matured=matured, rewrite_tracking=False)
    except NotEnoughOutcomes as exc:
        # Not a failure: the matured outcomes hold too few leads to learn from (never scored,
        # scored only after their outcome). The attempt counts, so the next one waits for new
        # outcomes (or the model's age) instead of failing every night.
        with ctx.writing("retrain"):
            _record_attempt(ctx)
        figures["not_trained"] = str(exc)
        return StepResult("retrain", "skipped", f"due ({due.reason}) but not trained: {exc}; the champion stays", figures)
    figures.update(
        promoted=result.promoted,
        decision=result.reason,
        rule=(
            f"AUC >= champion's - {cfg.loop.tolerance:g} and Brier <= champion's + {cfg.loop.tolerance:g}, "
            f"or champion older than {cfg.loop.max_age_days:g} days"
        ),
        holdout=result.holdout,
        holdout_leads=result.holdout_leads,
        new_outcomes=result.new_leads,
        champion=result.champion,
        challenger=result.challenger,
        archived=str(result.archived) if result.archived else None,
    )
    return StepResult("retrain", "ok", f"due ({due.reason}); {result.reason}", figures)


def inputs_digest(cfg: ProjectConfig, leads: pd.DataFrame) -> np.ndarray:
    """One 64-bit digest per lead of its inputs as the export gives them (the configured
    columns, validated): equal inputs, equal digests."""
    columns = [c for c in cfg.data.columns.all if c in leads.columns]
    return pd.util.hash_pandas_object(leads[columns], index=False).to_numpy(dtype="uint64")


def _closed_ids(history: pd.DataFrame) -> set[str]:
    """Leads the CRM says are converted, lost or deleted (latest state): not rescored."""
    latest = latest_rows(history)
    gone = (latest["outcome"] != "open") | latest["deleted"]
    return set(latest.loc[gone, "lead_id"].astype(str))


def model_set_version(cfg: ProjectConfig) -> str:
    """The models a score depends on: the scoring model's hash (12 characters), and the
    segment model's when there is one."""
    models = cfg.path("models_dir")
    shas = [str(read_manifest(models / SCORE_MODEL)["sha256"])[:12]]
    if (models / SEGMENT_MODEL).is_file():
        shas.append(str(read_manifest(models / SEGMENT_MODEL)["sha256"])[:12])
    return "/".join(shas)


def _read_scores(path: Path, id_col: str) -> Any:
    """The cycle's scores of the open leads (an Arrow table), or None before the first cycle.
    A damaged file, or one without the columns a rescore compares (the lead id, as
    ``data.id_column`` names it now, the inputs' digest, the model set), is a one-line error."""
    import pyarrow.parquet as pq

    if not path.is_file():
        return None
    remedy = "delete it to rescore every open lead"
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise LeadDataError(f"{path}: not a readable scores file ({first_line(exc)}); {remedy}") from None
    missing = [c for c in (id_col, DIGEST, MODEL_SET_COLUMN) if c not in table.column_names]
    if missing:
        raise LeadDataError(
            f"{path}: a scores file without the column(s) {missing} (written by another version, or before "
            f"data.id_column changed); {remedy}"
        )
    return table


def _score(cfg: ProjectConfig, leads: pd.DataFrame, digest: np.ndarray, scored_at: str, models: str, reasons: bool) -> Any:
    """Score ``leads`` (validated) in chunks, with ``reasons`` or not: the scores as an Arrow
    table with their inputs' digest and the model set (``models``)."""
    import pyarrow as pa

    from leadscoring.ingest.reader import DEFAULT_CHUNK_ROWS
    from leadscoring.serving.outputs import arrow_table
    from leadscoring.serving.scorer import Scorer

    scorer = Scorer.load(cfg)
    X = leads.drop(columns=[cfg.data.target_column], errors="ignore")
    tables = []
    for start in range(0, len(X), DEFAULT_CHUNK_ROWS):
        part = X.iloc[start : start + DEFAULT_CHUNK_ROWS]
        table = arrow_table(scorer.score_columns(part, reasons=reasons, scored_at=scored_at), text_reasons=True)
        table = table.append_column(DIGEST, pa.array(digest[start : start + len(part)], type=pa.uint64()))
        tables.append(table.append_column(MODEL_SET_COLUMN, pa.array([models] * len(part), type=pa.string())))
    return pa.concat_tables(tables)


def rescore_step(ctx: _Context) -> StepResult:
    """Rescore the open leads that are new, whose inputs changed or whose model changed."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from leadscoring.ingest.load import read_leads
    from leadscoring.ingest.schema import BadRows, check_bad_share
    from leadscoring.serving.batch import RejectedRows
    from leadscoring.serving.history import SCORE_EXTRA_COLUMNS, append_scores
    from leadscoring.serving.inputs import raw_inputs
    from leadscoring.serving.scorer import utc_now

    cfg = ctx.cfg
    id_col = cfg.data.id_column
    history = ctx.history if ctx.history is not None else read_outcome_history(cfg.path("outcome_history"))
    bad = BadRows() if cfg.scoring.bad_rows == "set_aside" else None
    export = read_leads(ctx.leads, cfg, require_target=False, bad_rows=bad)
    if bad is not None:
        check_bad_share(Path(ctx.leads).name, len(bad), len(bad) + len(export), cfg.scoring.max_bad_share, bad.first())
    ids = export[id_col].astype(str)
    closed = ids.isin(_closed_ids(history)).to_numpy()
    open_leads = export[~closed].reset_index(drop=True)
    ctx.open_leads = open_leads
    open_ids = open_leads[id_col].astype(str).to_numpy(dtype=object)
    digest = inputs_digest(cfg, open_leads)
    model_set = model_set_version(cfg)
    version = model_set.split("/")[0]  # the scoring model's, as every scoring path records it
    # Reasons (and the fit and engagement scores) cost most of a scoring: only when pushed.
    from leadscoring.serving.scorer import WITH_REASONS

    reasons = bool(WITH_REASONS & set(cfg.scoring.crm_fields))
    models = model_set + ("+reasons" if reasons else "")

    path = ctx.state_dir() / CYCLE_SCORES
    previous = _read_scores(path, id_col)
    if previous is not None and previous.num_rows:
        prev = pd.DataFrame(
            {
                "digest": previous.column(DIGEST).to_numpy(),
                "models": previous.column(MODEL_SET_COLUMN).to_pylist(),
            },
            index=pd.Index(previous.column(id_col).cast(pa.string()).to_pylist()),
        )
        pos = prev.index.get_indexer(pd.Index(open_ids))
        known = pos >= 0
        same_inputs = known & (prev["digest"].to_numpy()[np.where(known, pos, 0)] == digest)
        same_model = known & (np.asarray(prev["models"].to_numpy(), dtype=object)[np.where(known, pos, 0)] == models)
    else:
        known = same_inputs = same_model = np.zeros(len(open_ids), dtype=bool)
    events = cfg.events is not None
    todo = ~known | ~same_inputs | ~same_model | events
    counts = {
        "open_leads": len(open_leads),
        "closed_left_out": int(closed.sum()),
        "new": int((~known).sum()),
        "inputs_changed": int((known & ~same_inputs).sum()),
        "model_changed": int((known & same_inputs & ~same_model).sum()),
        "rescored": int(todo.sum()),
        "set_aside": len(bad) if bad is not None else 0,
    }
    why = (
        f"{counts['rescored']} of {counts['open_leads']} open lead(s) ({counts['new']} new, {counts['inputs_changed']} with "
        f"changed inputs, {counts['model_changed']} with new models{', behaviour from events' if events else ''}); "
        f"{counts['closed_left_out']} converted, lost or deleted lead(s) of the export left out"
    )
    rejected = ctx.state_dir() / CYCLE_REJECTED
    if bad:
        where = "" if ctx.dry_run else f" ({rejected})"
        why += f"; {len(bad)} row(s) of the export set aside for problems{where}, the first: {bad.first()}"
    scored_at = utc_now()
    fresh = _score(cfg, open_leads[todo], digest[todo], scored_at, models, reasons) if todo.any() else None
    kept = None
    if previous is not None and previous.num_rows:
        still = pc.is_in(previous.column(id_col).cast(pa.string()), value_set=pa.array(open_ids[~todo], type=pa.string()))
        kept = previous.filter(still)
    parts = [t for t in (kept, fresh) if t is not None and t.num_rows]
    if parts:
        schema = (fresh if fresh is not None else kept).schema
        scores = pa.concat_tables([t.select(schema.names).cast(schema) for t in parts])
    else:
        scores = None
    ctx.scores = scores
    if ctx.dry_run:
        return StepResult("rescore", "dry-run", f"would rescore {why} (with the current model)", counts)
    with ctx.writing("rescore"):
        # The score history first: a cycle stopped between the two writes rescores these leads
        # the next night (another scoring of theirs in the history), and loses none.
        if fresh is not None:
            extra = [c for c in SCORE_EXTRA_COLUMNS if c in fresh.column_names]  # e.g. the A/B group
            append_scores(
                cfg.path("score_history"),
                fresh.column(id_col).cast(pa.string()).to_pylist(),
                fresh.column("score").to_numpy(),
                version,
                scored_at,
                job_id=f"cycle-{ctx.cycle_id}",
                inputs=raw_inputs(cfg, open_leads[todo]),  # what a retrain learns from
                extra=fresh.select(extra).to_pandas() if extra else None,
            )
            # Right after the history: the next cycle reads these scores as the leads' previous
            # ones and would not alert them again.
            counts["alerted"] = _alert(cfg, fresh, counts)
            if counts["alerted"]:
                why += f"; {counts['alerted']} lead(s) entered an alert level"
            if counts.get("alerts_undelivered"):
                why += f" ({counts['alerts_undelivered']} alert message(s) NOT delivered to the webhook: see the log)"
        if scores is not None:
            with atomic_path(path) as tmp:
                pq.write_table(scores, tmp)
        elif path.is_file():
            path.unlink()
        if bad:
            rows_set_aside = RejectedRows(rejected, cfg)
            try:
                rows_set_aside.add(bad.table())
                rows_set_aside.commit()
            finally:
                rows_set_aside.discard()  # (nothing after the commit)
        elif rejected.is_file():  # the rows an earlier night set aside: read fine now
            rejected.unlink()
    return StepResult("rescore", "ok", f"rescored {why}", counts)


def _alert(cfg: ProjectConfig, fresh: Any, counts: dict[str, Any]) -> int:
    """Alert the rescored leads that entered an alert level (``alerts:`` webhook; a lead already
    at its level, by the score history's previous score, is not alerted again; control leads
    of the A/B test never). Part of the rescore's writes, right after the score history (SIGTERM
    waits for it, at most ``alerts.drain_seconds``): a lead is alerted once, never twice. An
    alert that cannot be sent is a warning (``counts["alerts_error"]``; messages the webhook
    did not take: ``counts["alerts_undelivered"]``), never the step's failure: the scores are
    written and pushed all the same. Returns how many leads entered an alert level."""
    from leadscoring.serving.alerts import alert_fields, alert_scored_leads, webhook_url

    try:
        if webhook_url(cfg) is None:
            return 0
        sent = alert_scored_leads(cfg, fresh.select([c for c in alert_fields(cfg) if c in fresh.column_names]).to_pandas())
        if sent.undelivered:
            counts["alerts_undelivered"] = sent.undelivered
        return sent.entered
    except Exception as exc:  # a webhook problem never stops the scores
        log.warning("cycle: lead alerts not sent: %s", one_line(exc, LINE_LIMIT))
        counts["alerts_error"] = one_line(exc, LINE_LIMIT)
        return 0


def push_step(ctx: _Context) -> StepResult:
    """The open leads' latest scores to the CRM; the push state skips what it already accepted."""
    from leadscoring.crm.push import PUSH_STATE_FILE, push_scores

    cfg = ctx.cfg
    if ctx.scores is None or not ctx.scores.num_rows:
        return StepResult("push", "skipped", "no open lead to push", {})
    scores = ctx.scores.drop_columns([DIGEST, MODEL_SET_COLUMN]).to_pandas()
    summary = push_scores(
        scores,
        None,
        cfg.data.id_column,
        crm=cfg.crm,
        state_file=ctx.state_dir() / PUSH_STATE_FILE,
        fields=cfg.scoring.crm_fields,
        progress=ctx.progress,
        experiment=cfg.experiment,  # what a control lead's record gets
        dry_run=ctx.dry_run,
    )
    figures = {"sent": summary.sent, "skipped": summary.skipped, "failed": summary.failed, "pending": summary.pending}
    if summary.failures:
        figures["failures"] = dict(list(summary.failures.items())[:10])
    status = "dry-run" if ctx.dry_run else ("failed" if summary.failed else "ok")
    return StepResult("push", status, str(summary), figures)


def monitoring_step(ctx: _Context) -> StepResult:
    """The monitoring report (:mod:`leadscoring.loop.monitoring`, as ``leadscoring monitor``):
    ``monitoring.html`` and ``monitoring.json`` in ``paths.results_dir``, as of now (the
    cycle's own scorings included); its alerts in the figures. A dry run builds it and writes
    nothing."""
    from leadscoring.loop.monitoring import build_monitoring, write_monitoring

    # As of now: this cycle's scorings included; the outcome history as the pull left it.
    report = build_monitoring(ctx.cfg, outcome_history=ctx.history)
    figures = {
        "cohorts": len(report.cohorts),
        "alerts": [a.message for a in report.alerts],
        "notes": list(report.notes),
    }
    said = f"{len(report.cohorts)} {report.cohort}ly cohort(s), {len(report.alerts)} alert(s)"
    if report.alerts:
        said += ": " + "; ".join(a.message for a in report.alerts[:3]) + ("; ..." if len(report.alerts) > 3 else "")
    if ctx.dry_run:
        return StepResult("monitoring", "dry-run", f"would write the monitoring report: {said}", figures)
    page, data = write_monitoring(ctx.cfg, report=report)
    from leadscoring.serving.alerts import send_monitoring_alerts

    figures["alerts_sent"] = send_monitoring_alerts(ctx.cfg, report)  # once each (alerts.webhook_url)
    return StepResult("monitoring", "ok", f"{said} -> {page}, {data.name}", figures)


#: Each step's function, in order (:data:`STEPS`).
STEP_FUNCTIONS: dict[str, Callable[[_Context], StepResult]] = {
    "pull": pull_step,
    "retrain": retrain_step,
    "rescore": rescore_step,
    "push": push_step,
    "monitoring": monitoring_step,
}


# -- the cycle ---------------------------------------------------------------------------------


def _log_line(ctx: _Context, result: StepResult) -> None:
    if ctx.dry_run:
        return
    line = {
        "cycle": ctx.cycle_id,
        "step": result.step,
        "status": result.status,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(result.seconds, 1),
        "summary": result.summary,
        "figures": result.figures,
    }
    append_json_line(line, run_log_path(ctx.cfg))


def _run_step(ctx: _Context, name: str) -> StepResult:
    t0 = time.perf_counter()
    try:
        checkpoint(name)
        result = STEP_FUNCTIONS[name](ctx)
    except Terminated as exc:
        result = StepResult(name, "interrupted", one_line(exc, LINE_LIMIT), seconds=time.perf_counter() - t0)
        with ctx.term.deferred():
            _log_line(ctx, result)
        raise
    except Exception as exc:  # a step's failure is logged, whatever it was
        if not isinstance(exc, LeadDataError | ConfigError | OutputPathError | ModelIntegrityError | CrmError | OSError):
            log.exception("cycle %s: step %s failed", ctx.cycle_id, name)
        result = StepResult(name, "failed", one_line(exc, LINE_LIMIT), {**ctx.known.get(name, {}), "error": type(exc).__name__})
    result.seconds = time.perf_counter() - t0
    with ctx.term.deferred():
        _log_line(ctx, result)
    return result


def run_cycle(
    cfg: ProjectConfig,
    leads: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: bool = False,
    on_step: Callable[[StepResult], None] | None = None,
) -> CycleResult:
    """Run the nightly cycle (see the module) on the open leads of ``leads`` (the client's
    export, raw layout), as of ``now`` (default: this machine's clock); ``on_step`` is told
    each step's result as it ends. Raises :class:`~leadscoring.errors.LockHeld` when another
    cycle runs, :class:`CycleInterrupted` on SIGTERM (after logging it)."""
    if cfg.crm is None:
        raise ConfigError("cycle: the configuration has no crm: section (kind, url, ...); the cycle pulls from and pushes to it")
    leads = Path(leads)
    if not leads.is_file():
        raise LeadDataError(f"{leads}: no such file (cycle --leads: the client's export of open leads)")
    from leadscoring.serving.alerts import webhook_url

    webhook_url(cfg)  # a malformed webhook URL is the configuration's error, before the first step
    auth_headers(cfg.crm)  # so is a credential variable unset (cron without its environment file): no step can reach the CRM
    now = (now or datetime.now(UTC)).astimezone(UTC)
    cycle_id = f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"  # two cycles in one second: two ids (run log, workbook, jobs)
    lock: contextlib.AbstractContextManager[None] = (
        contextlib.nullcontext()
        if dry_run
        else exclusive_lock(cfg.path("crm_state") / CYCLE_LOCK, "leadscoring cycle", stale_seconds=STALE_CYCLE_SECONDS)
    )
    result = CycleResult(cycle_id, "running")
    t0 = time.perf_counter()
    with lock, Termination(CycleInterrupted, f"cycle {cycle_id} stopped; the next cycle completes it") as term:
        ctx = _Context(cfg, leads, now, cycle_id, dry_run, progress, term)
        name = ""
        try:
            for name in STEPS:
                need = NEEDS.get(name)
                if need is not None and any(s.step == need and s.status == "failed" for s in result.steps):
                    step = StepResult(name, "skipped", f"not run: the {need} step failed")
                    with term.deferred():
                        _log_line(ctx, step)
                else:
                    step = _run_step(ctx, name)
                result.steps.append(step)
                if on_step is not None:
                    on_step(step)
            failed = [s.step for s in result.steps if s.status == "failed"]
            result.status = "failed" if failed else ("dry-run" if dry_run else "ok")
        except Terminated as exc:
            result.status = "interrupted"
            if not result.steps or result.steps[-1].step != name:
                result.steps.append(StepResult(name, "interrupted", one_line(exc, LINE_LIMIT)))
            raise
        finally:
            result.seconds = time.perf_counter() - t0
            with term.deferred():
                final = StepResult("cycle", result.status, "", {"steps": {s.step: s.status for s in result.steps}})
                final.seconds = result.seconds
                _log_line(ctx, final)
                if not dry_run:
                    from leadscoring.tracking import update_tracking

                    update_tracking(cfg)  # a report: a failure to rewrite it is a warning
    return result
