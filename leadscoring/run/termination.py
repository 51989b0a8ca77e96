"""SIGTERM during a production run: it raises :class:`RunInterrupted` (logged as
"interrupted", staging cleaned up), except during run promotion (the products copied into the
project) and while the run writes its log, when it is only recorded and acted on afterwards."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class RunInterrupted(KeyboardInterrupt):
    """The run was terminated (SIGTERM). Derived from KeyboardInterrupt, like Ctrl-C, so no
    ``except Exception`` on the way (papermill, nbclient, the runner) mistakes it for a
    notebook error."""


class Termination:
    """While active (main thread only), SIGTERM raises :class:`RunInterrupted` so the run can
    log itself and clean up; the previous handler is restored on exit. Inside ``deferred()``
    a SIGTERM is only recorded (``pending``): run promotion and the run's own bookkeeping finish."""

    def __init__(self) -> None:
        self.previous: Any = None
        self.installed = False
        self.defer = False
        self.pending = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.defer:
            self.pending = True
            return
        raise RunInterrupted(f"terminated by {signal.Signals(signum).name}; nothing was promoted, the run is logged as interrupted")

    def __enter__(self) -> Termination:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._handle)
            self.installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.installed:
            signal.signal(signal.SIGTERM, self.previous if self.previous is not None else signal.SIG_DFL)
            self.installed = False

    @contextmanager
    def deferred(self) -> Iterator[None]:
        was, self.defer = self.defer, True
        try:
            yield
        finally:
            self.defer = was
