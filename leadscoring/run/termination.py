"""SIGTERM during a production run: it raises :class:`RunInterrupted` (logged as
"interrupted", staging cleaned up), except during run promotion (the products copied into the
project) and while the run writes its log, when it is only recorded and acted on afterwards.
The mechanism is :mod:`leadscoring.termination`'s, shared with the nightly cycle."""

from __future__ import annotations

from leadscoring.termination import Terminated
from leadscoring.termination import Termination as _Termination


class RunInterrupted(Terminated):
    """The run was terminated (SIGTERM)."""


class Termination(_Termination):
    """:class:`leadscoring.termination.Termination` raising :class:`RunInterrupted`."""

    def __init__(self) -> None:
        super().__init__(RunInterrupted, "nothing was promoted, the run is logged as interrupted")
