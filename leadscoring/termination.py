"""SIGTERM during a long job (the production run, the nightly cycle): while a
:class:`Termination` is active, SIGTERM raises the job's :class:`Terminated` exception so the
job can log itself and clean up, except inside ``deferred()`` (a promotion, the job's own
bookkeeping), where it is only recorded and acted on afterwards."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Terminated(KeyboardInterrupt):
    """The job was terminated (SIGTERM). Derived from KeyboardInterrupt, like Ctrl-C, so no
    ``except Exception`` on the way mistakes it for an ordinary error."""


class Termination:
    """While active (main thread only), SIGTERM raises ``interrupted`` (a :class:`Terminated`
    class) with "terminated by SIGTERM; ``consequence``"; the previous handler is restored on
    exit. Inside ``deferred()`` a SIGTERM is only recorded (``pending``)."""

    def __init__(self, interrupted: type[Terminated] = Terminated, consequence: str = "stopped") -> None:
        self.interrupted = interrupted
        self.consequence = consequence
        self.previous: Any = None
        self.installed = False
        self.defer = False
        self.pending = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.defer:
            self.pending = True
            return
        raise self.interrupted(f"terminated by {signal.Signals(signum).name}; {self.consequence}")

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
        """A block that a SIGTERM does not interrupt: the signal is recorded in ``pending``."""
        was, self.defer = self.defer, True
        try:
            yield
        finally:
            self.defer = was
