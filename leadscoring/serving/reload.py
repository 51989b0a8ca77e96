"""Hot reload of the scoring service's models: a promoted set is loaded, verified and
swapped in while the service keeps answering.

The signal is the promotion record (:data:`~leadscoring.artifacts.PROMOTION_FILE`) that
:func:`~leadscoring.artifacts.replace_model_set` writes *after* the new set is in place (a run
promotion, a challenger promotion by ``retrain``, a ``rollback``): it names the SHA-256 of each
model of the set. :meth:`ModelReloader.check` (at most every ``service.reload_seconds``) reads
it — one small file — and acts only when it names other models than the ones served. A set
half-way through a replacement is never loaded: until the replacement ends, the record still
names the set being served; and the models loaded must be exactly the recorded ones (their
manifests checked before unpickling, and again after). Model files that are not the recorded
ones (a replacement under way, or files copied by hand without a promotion) are not loaded and
not refused either: the next promotion record is waited for.

Loading reuses :func:`~leadscoring.artifacts.load_model`'s verification (SHA-256 against the
manifest, library versions, code), then the service's ``build`` makes the scoring functions
and a smoke prediction on a one-lead request through them. Only then is the new
:class:`ServedSet` swapped in, by one reference assignment: a request reads
:attr:`ModelReloader.current` once and finishes on the set it read.

A set that fails is refused: one warning line (its version and why), the old set keeps
serving, and :attr:`ModelReloader.refused` says so (``/health``). The same files are not
tried again: only a change of the record or of the model files (their sizes and modification
times) brings a new attempt.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from leadscoring.artifacts import (
    PROMOTION_FILE,
    SCORE_MODEL,
    SEGMENT_MODEL,
    ModelIntegrityError,
    manifest_path,
    parse_promotion,
    read_manifest,
)
from leadscoring.errors import first_line
from leadscoring.serving.scorer import Scorer

log = logging.getLogger(__name__)

#: The models of the set the service loads (the rule scorer is not used to answer requests).
SERVED_MODELS = (SCORE_MODEL, SEGMENT_MODEL)

#: Scores validated leads: one JSON-ready dict per lead, in order.
ScoreLeads = Callable[[list[BaseModel]], list[dict[str, Any]]]


def now_iso() -> str:
    """Now, UTC, ISO 8601 to the second (the times ``/health`` shows)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ServedSet:
    """One loaded model set as the service uses it: the scorer and the scoring functions made
    from it. Never changed once built; a reload builds a new one and swaps the reference."""

    scorer: Scorer
    score_one: ScoreLeads
    score_many: Callable[[bytes], bytes]
    loaded_at: str

    @property
    def version(self) -> str:
        """The scoring model's version (first 12 characters of its SHA-256)."""
        return self.scorer.version

    @property
    def models(self) -> dict[str, str | None]:
        """SHA-256 of each served model as its manifest records (None: not part of the set)."""
        seg = self.scorer.segment_manifest.get("sha256") if self.scorer.segmenter is not None else None
        return {SCORE_MODEL: self.scorer.manifest.get("sha256"), SEGMENT_MODEL: seg}


def smoke_test(served: ServedSet, lead: BaseModel) -> None:
    """Score ``lead`` (a one-lead request) through ``served``'s scoring function; ValueError
    when the answer has no probability in [0, 1] (exceptions of the model pass through)."""
    out = served.score_one([lead])[0]
    p = out.get("probability")
    if not isinstance(p, int | float) or math.isnan(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"smoke prediction gave probability {p!r}, not a number in [0, 1]")


@dataclass(frozen=True)
class Refusal:
    """A promoted set that was not loaded: its version, why (one line) and when."""

    version: str
    reason: str
    at: str

    def as_dict(self) -> dict[str, str]:
        return {"version": self.version, "reason": self.reason, "at": self.at}


def _one_line(exc: BaseException) -> str:
    """Why a set was refused: the message's first line, after the error's type unless it is a
    failed verification (whose message says it all)."""
    if isinstance(exc, ModelIntegrityError) or not str(exc).strip():
        return first_line(exc)
    return f"{type(exc).__name__}: {first_line(exc)}"


class _NotPromoted(Exception):
    """The model files are not the ones the promotion record names."""


class ModelReloader:
    """Holds the served set (:attr:`current`) and replaces it when a new promotion appears in
    ``folder``: ``load(folder)`` loads and verifies a scorer, ``build(scorer, previous)`` makes
    the :class:`ServedSet` and runs its smoke prediction (raising when it fails)."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        current: ServedSet,
        load: Callable[[Path], Scorer],
        build: Callable[[Scorer, Scorer], ServedSet],
    ) -> None:
        self.folder = Path(folder)
        #: The set requests are scored with: read once per request, replaced by one assignment.
        self.current = current
        #: The last promotion refused (kept after a later good one, with its time).
        self.refused: Refusal | None = None
        self._load = load
        self._build = build
        self._tried_key: tuple[Any, ...] | None = None  # the last state that did not end in a swap
        self._lock = threading.Lock()  # one check at a time

    def _key(self, record: bytes) -> tuple[Any, ...]:
        """What an attempt is remembered by: the record and the model files' sizes and times."""
        stats: list[tuple[str, int, int] | None] = []
        for name in SERVED_MODELS:
            for path in (self.folder / name, manifest_path(self.folder / name)):
                try:
                    st = path.stat()
                    stats.append((path.name, st.st_size, st.st_mtime_ns))
                except FileNotFoundError:
                    stats.append(None)
        return (record, tuple(stats))

    def check(self) -> bool:
        """Load the promoted set if it is not the one served; True when a new set was swapped in.
        Never raises for a bad set: it is refused (logged, :attr:`refused`), the old one stays."""
        with self._lock:
            try:
                raw = (self.folder / PROMOTION_FILE).read_bytes()
            except FileNotFoundError:
                return False  # the set was never replaced through replace_model_set
            key = self._key(raw)
            if key == self._tried_key:
                return False  # refused or waited for as it is: tried again when the files change
            self._tried_key = key
            try:
                record = parse_promotion(raw)  # the bytes the key was made of
            except ModelIntegrityError as exc:
                self._refuse("unknown", _one_line(exc))
                return False
            recorded = record["models"]
            wanted = {name: recorded.get(name) for name in SERVED_MODELS}
            if wanted == self.current.models:
                return False
            version = str(wanted[SCORE_MODEL] or "unknown")[:12]
            t0 = time.perf_counter()
            try:
                served = self._verified(wanted)
            except _NotPromoted as exc:
                log.debug("model set %s: %s; waiting for the next promotion record", version, exc)
                return False
            except Exception as exc:  # noqa: BLE001 - any failure refuses the set; the service goes on
                self._refuse(version, _one_line(exc))
                return False
            previous, self.current = self.current, served  # the swap: one reference assignment
            log.info(
                "model set %s (promoted %s) loaded and verified in %.2f s; it replaces %s",
                served.version,
                record.get("promoted_at"),
                time.perf_counter() - t0,
                previous.version,
            )
            return True

    def _verified(self, wanted: dict[str, str | None]) -> ServedSet:
        """The recorded set loaded, verified and smoke-tested; raises when anything fails."""
        self._matches(wanted, {n: self._on_disk(n) for n in SERVED_MODELS})  # before unpickling
        scorer = self._load(self.folder)
        loaded = {
            SCORE_MODEL: scorer.manifest.get("sha256"),
            SEGMENT_MODEL: scorer.segment_manifest.get("sha256") if scorer.segmenter is not None else None,
        }
        self._matches(wanted, loaded)  # the files did not change while loading
        try:
            return self._build(scorer, self.current.scorer)
        except Exception as exc:
            raise ModelIntegrityError(f"smoke prediction failed: {_one_line(exc)}") from exc

    def _on_disk(self, name: str) -> str | None:
        path = self.folder / name
        return read_manifest(path).get("sha256") if path.is_file() else None

    @staticmethod
    def _matches(wanted: dict[str, str | None], found: dict[str, str | None]) -> None:
        for name in SERVED_MODELS:
            if wanted[name] != found[name]:
                raise _NotPromoted(
                    f"{name} is {str(found[name])[:12]}, not the promoted {str(wanted[name])[:12]} "
                    "(a replacement under way, or files copied by hand)"
                )

    def _refuse(self, version: str, reason: str) -> None:
        self.refused = Refusal(version, reason, now_iso())
        log.warning("model set %s refused, still serving %s: %s", version, self.current.version, reason)

    async def watch(self, every: float) -> None:
        """Check every ``every`` seconds, in a worker thread (requests go on meanwhile), until
        cancelled."""
        while True:
            await asyncio.sleep(every)
            try:
                await asyncio.to_thread(self.check)
            except Exception as exc:  # noqa: BLE001 - the watcher outlives a failing check
                log.error("model reload: check failed: %s", _one_line(exc))
