"""Errors caused by the user's input, reported as one line (the CLI prints them without a
traceback)."""

from __future__ import annotations

import errno
import os

#: ``errno`` values of a write refused for lack of space: a full disk, an exhausted quota.
DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


class LeadDataError(ValueError):
    """The leads do not match the configured layout (message names what is wrong)."""


class LockHeld(LeadDataError):
    """A lock another process holds (:func:`leadscoring.io.exclusive_lock`): the work is running already."""


class OutputPathError(ValueError):
    """An output path that must not or cannot be written (the input itself, raw data, a folder)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def one_line(exc: BaseException, limit: int | None = None) -> str:
    """An exception's whole message on one line (whitespace runs as one space; its type's name
    when it has none), cut at ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if limit is None else text[:limit]


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write refused for lack of space (``ENOSPC`` or ``EDQUOT``)."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL


def disk_full_error(path: str | os.PathLike[str], exc: OSError) -> OutputPathError:
    """The one-line error for ``path`` not written because the disk (or quota) is full."""
    reason = exc.strerror or os.strerror(exc.errno or errno.ENOSPC)
    return OutputPathError(f"{os.fspath(path)}: not written, the disk is full ({reason}); free some space and run again")
