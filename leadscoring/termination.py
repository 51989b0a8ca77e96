"""SIGTERM during a long job (the production run, the nightly cycle): while a
:class:`Termination` is active, SIGTERM raises the job's :class:`Terminated` exception so the
job can log itself and clean up, except inside ``deferred()`` (a promotion, the job's own
bookkeeping), where it is only recorded and acted on afterwards.

An event loop is the exception to "raise where the signal lands": an exception raised inside
asyncio's own machinery can leave a task that nobody wakes, and the loop's shutdown then waits
for it forever. :func:`run_async` runs a coroutine so that the signal cancels it instead, and the
handler's exception is raised once the loop has stopped."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


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


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, where a SIGTERM is given to the process's handler (a
    :class:`Termination`'s, say) from a loop callback rather than wherever it lands: when the
    handler raises, ``main`` is cancelled (its requests abandoned at an ``await``, its files
    whole) and the handler's exception is raised after the loop has stopped; when it only
    records the signal (``deferred()``), ``main`` goes on. Without a Python handler (default or
    ignored), nothing changes."""
    raised: list[BaseException] = []

    async def guarded() -> T:
        handler = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is not threading.main_thread() or not callable(handler):
            return await main
        task = asyncio.ensure_future(main)

        def on_signal() -> None:
            try:
                handler(signal.SIGTERM, None)
            except BaseException as exc:  # noqa: BLE001 - the handler's way to stop the job
                raised.append(exc)
                task.cancel()

        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGTERM, on_signal)
        except NotImplementedError:  # an event loop without Unix signals (Windows): as asyncio.run
            return await task
        try:
            return await task
        finally:
            loop.remove_signal_handler(signal.SIGTERM)  # this resets to the default: the handler goes back
            signal.signal(signal.SIGTERM, handler)

    try:
        result = asyncio.run(guarded())
    except asyncio.CancelledError:
        if raised:
            raise raised[0] from None
        raise
    if raised:  # ``main`` swallowed its cancellation
        raise raised[0]
    return result
