"""The service's scorings into the score history, off the request path.

A request hands its leads (as validated) and their answers to :meth:`HistoryRecorder.record`:
a list append under a lock, nothing more. A background thread appends what was handed
every ``service.history_flush_seconds`` (sooner once :data:`FLUSH_ROWS` leads wait) as one
part of the score history (:func:`leadscoring.serving.history.append_scorings`: each lead with
its model version, scoring time, inputs and the other score fields the history keeps, such as
its experiment group). A part that cannot be written (a full disk)
is logged and tried again with the same job id at the next flush (a retry never appends a
row twice); beyond :data:`MAX_WAITING` leads, the oldest are dropped, logged. What waits when
the process is killed is lost: at most one flush interval of scorings (a clean stop, the
app's shutdown, flushes).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from leadscoring.config import ProjectConfig
from leadscoring.errors import LeadDataError
from leadscoring.serving.history import SCORE_EXTRA_COLUMNS, append_scorings, new_job_id
from leadscoring.serving.inputs import record_inputs

log = logging.getLogger(__name__)

#: Leads waiting that wake the writer before its interval ends.
FLUSH_ROWS = 50_000
#: Leads kept waiting at most (the history unwritable for a long time): the oldest are dropped.
MAX_WAITING = 1_000_000


class HistoryRecorder:
    """Gathers the service's scorings and appends them to the score history in the background
    (see the module). ``id_field``: the answers' id key; ``rows``: the validated requests."""

    def __init__(self, cfg: ProjectConfig, flush_seconds: float, id_field: str = "lead_id") -> None:
        self.cfg = cfg
        self.path = cfg.path("score_history")
        self.flush_seconds = flush_seconds
        self.id_field = id_field
        self._waiting: list[tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]] = []
        self._count = 0
        self._lock = threading.Lock()  # the waiting list
        self._flushing = threading.Lock()  # one flush at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._job = new_job_id()  # the next part's job id; kept until that part is written
        self._pid = os.getpid()

    def record(self, rows: Sequence[Mapping[str, Any]], answers: Sequence[Mapping[str, Any]]) -> None:
        """Hand over one request's leads (as validated, every configured field present) and
        their answers (``lead_id``, ``score``, ``model_version``, ``scored_at``), in order."""
        with self._lock:
            self._waiting.append((rows, answers))
            self._count += len(answers)
            full = self._count >= FLUSH_ROWS
            if self._thread is None or self._pid != os.getpid():  # started with the first scoring (per process)
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="score-history", daemon=True)
                self._thread.start()
        if full:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def _take(self) -> list[tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]]:
        with self._lock:
            taken, self._waiting, self._count = self._waiting, [], 0
        return taken

    def _give_back(self, taken: list[tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]]) -> None:
        with self._lock:
            self._waiting = taken + self._waiting
            self._count = sum(len(a) for _, a in self._waiting)
            dropped = 0
            while self._count > MAX_WAITING and len(self._waiting) > 1:
                _, answers = self._waiting.pop(0)
                self._count -= len(answers)
                dropped += len(answers)
        if dropped:
            log.warning("score history %s: %d scoring(s) dropped unrecorded (the history could not be written)", self.path, dropped)

    def flush(self) -> int:
        """Append what waits as one part now; returns the rows appended (0: nothing waited, or
        the write failed and will be tried again)."""
        with self._flushing:
            taken = self._take()
            if not taken:
                return 0
            rows = [r for request, _ in taken for r in request]
            answers = [a for _, request in taken for a in request]
            try:
                n = append_scorings(
                    self.path,
                    np.array([str(a[self.id_field]) for a in answers], dtype=object),
                    [a["score"] for a in answers],
                    [a["model_version"] for a in answers],
                    [a["scored_at"] for a in answers],
                    job_id=self._job,
                    inputs=record_inputs(self.cfg, rows),
                    extra=_extra(answers),
                )
            except (LeadDataError, OSError) as exc:
                log.error("score history %s: %d scoring(s) not appended yet (%s); tried again", self.path, len(answers), exc)
                self._give_back(taken)
                return 0
            self._job = new_job_id()
            return n

    def close(self) -> None:
        """Stop the background thread and append what waits."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        self.flush()


def _extra(answers: Sequence[Mapping[str, Any]]) -> pd.DataFrame | None:
    """The answers' other score fields the history keeps (e.g. ``experiment_group``), null
    where an answer has none; None when no answer has any."""
    names = [n for n in SCORE_EXTRA_COLUMNS if any(n in a for a in answers)]
    return pd.DataFrame({n: [a.get(n) for a in answers] for n in names}) if names else None
