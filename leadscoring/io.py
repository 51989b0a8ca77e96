"""Atomic file writing: a product is either the old file or the complete new one.

The temporary file of a write is a hidden name beside its destination,
``.{name}.{pid}-{host}.XXXXXXXX.tmp`` (the writer's process id and a short tag of its host).
A writer killed mid-write (``kill -9``) cannot remove its own, so the next write to the same
destination removes the leftovers of writers that are gone (:func:`remove_stale_temporaries`);
a live writer's temporary file is never touched.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from leadscoring.errors import LeadDataError, LockHeld, OutputPathError, disk_full_error, is_disk_full

log = logging.getLogger(__name__)

#: A leftover temporary file is removed only when older than this (seconds) and its writer
#: is gone ...
STALE_SECONDS = 10 * 60
#: ... or, whatever its writer (another host's, an unknown or reused process id), when older
#: than this: no write of ours lasts a day.
ABANDONED_SECONDS = 24 * 60 * 60


def _host_tag() -> str:
    """A short, file-name-safe tag of this host: a process id is only meaningful on its host."""
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def _temporary_name(name: str) -> re.Pattern[str]:
    """The temporary files of writes to ``name``: ``.{name}.{pid}-{host}.XXXXXXXX.tmp``, and
    ``.{name}.XXXXXXXX.tmp`` of earlier versions (no writer recorded); ``XXXXXXXX`` is
    :func:`tempfile.mkstemp`'s random part (8 characters of ``[a-z0-9_]``), so the temporary
    files of another destination (``{name}.bak``) never match."""
    return re.compile(rf"^\.{re.escape(name)}\.(?:(?P<pid>\d+)-(?P<host>[0-9a-f]{{8}})\.)?[a-z0-9_]{{8}}\.tmp$")


def _process_alive(pid: int) -> bool | None:
    """Whether process ``pid`` of this host runs; None when that cannot be told (Windows,
    where ``os.kill`` would end the process)."""
    if os.name == "nt":
        return None
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    except OSError:
        return None
    return True


def remove_stale_temporaries(dest: str | os.PathLike[str], *, now: float | None = None) -> list[Path]:
    """Remove the temporary files that writes to ``dest`` left behind (a writer killed
    mid-write): those older than :data:`STALE_SECONDS` whose writer — a process of this host
    — is gone, and any older than :data:`ABANDONED_SECONDS`. A live writer's file, a recent
    one, and every other file are kept. Best effort: a file that cannot be removed is left
    (and said in the log). The files removed."""
    dest = Path(dest)
    pattern = _temporary_name(dest.name)
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return removed
    host = _host_tag()
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue  # removed meanwhile (another writer cleaning up)
        if age < STALE_SECONDS:
            continue
        pid = m.group("pid")
        gone = pid is not None and m.group("host") == host and _process_alive(int(pid)) is False
        if not (gone or age >= ABANDONED_SECONDS):
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("%s: cannot remove a leftover temporary file (%s)", entry.path, exc.strerror or exc)
            continue
        log.info("%s: removed a leftover temporary file (%.0f minutes old, its writer is gone)", entry.path, age / 60)
        removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it over ``dest`` on success.

    On any exception the temporary file is removed and ``dest`` is left untouched; a full
    disk (or quota) becomes a one-line error naming ``dest``. The
    temporary name records the writer (``.{name}.{pid}-{host}.XXXXXXXX.tmp``); the leftovers
    of earlier writers to ``dest`` that are gone are removed first
    (:func:`remove_stale_temporaries`).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.{os.getpid()}-{_host_tag()}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; products are ordinary files
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except OSError as exc:
        if is_disk_full(exc):  # one line naming the product, which is left as it was
            raise disk_full_error(dest, exc) from None
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def exclusive_lock(lock: str | os.PathLike[str], what: str, *, stale_seconds: float = 60 * 60) -> Iterator[None]:
    """One holder at a time: a lock file created exclusively (any platform, no ``fcntl``);
    one left by a holder that died is taken over at once when the holder was a process of
    this host that is gone (a job killed by ``timeout`` or ``systemctl stop``), else after
    ``stale_seconds``. ``what`` names the
    work in messages (e.g. "compaction of the score history"). A lock held by another is a
    one-line :class:`LockHeld` (a :class:`LeadDataError`). On exit the lock is removed only if it is still ours
    (after a takeover it belongs to another holder)."""
    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            break
        except FileExistsError:
            try:
                age = time.time() - lock.stat().st_mtime
            except FileNotFoundError:
                continue
            if attempt == 0 and (age > stale_seconds or _holder_gone(lock)):
                log.warning("%s: taking over the lock of a %s left %.0f s ago (its holder is gone)", lock, what, age)
                lock.unlink(missing_ok=True)
                continue
            raise LockHeld(f"{lock}: another {what} is running (for {age:.0f} s); try again later") from None
    else:
        raise LockHeld(f"{lock}: the lock of the {what} could not be taken; try again later")
    token = f"{os.getpid()} {_host_tag()} {uuid.uuid4().hex}\n"
    try:
        os.write(fd, token.encode())
        os.close(fd)
        yield
    finally:
        try:
            if lock.read_text(encoding="utf-8") == token:
                lock.unlink(missing_ok=True)
        except FileNotFoundError:
            pass


def _holder_gone(lock: Path) -> bool:
    """Whether the process that wrote ``lock`` (``pid host token``) was one of this host's and
    has ended; False when that cannot be told (another host, an older lock without its host)."""
    try:
        fields = lock.read_text(encoding="utf-8").split()
    except (OSError, UnicodeError):
        return False
    if len(fields) != 3 or not fields[0].isdigit() or fields[1] != _host_tag():
        return False
    return _process_alive(int(fields[0])) is False


def replace_folder(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Make the complete folder ``src`` (written beside ``dest``) the folder ``dest``: the
    previous ``dest`` is moved aside, not deleted, until ``src`` has its name (put back if
    that fails), then removed. Between the two renames ``dest`` is briefly absent; nothing
    is ever lost: the old folder or the new one holds every file."""
    src, dest = Path(src), Path(dest)
    old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}") if dest.exists() else None
    if old is not None:
        os.replace(dest, old)
    try:
        os.replace(src, dest)
    except BaseException:
        if old is not None:
            os.replace(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dest


def append_json_line(obj: Any, dest: str | os.PathLike[str]) -> Path:
    """Append ``obj`` as one JSON line to ``dest`` (a log: ``01_Documentos/run_log.jsonl``),
    in one write; the folder is made if needed. A last line left unfinished (a writer killed
    mid-line, a full disk) is ended first, so this line is never glued onto it and lost."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(obj, default=str, ensure_ascii=False) + "\n"
    with open(dest, "ab") as fh:
        fh.write((line if last_line_ended(dest) else "\n" + line).encode("utf-8"))
    return dest


def last_line_ended(path: str | os.PathLike[str]) -> bool:
    """Whether the file's last line has its line end (or there is no line yet): an append
    after a line cut short (a writer killed, a hand edit) must end that line first."""
    try:
        with open(path, "rb") as fh:
            if fh.seek(0, os.SEEK_END) == 0:
                return True
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"
    except FileNotFoundError:
        return True


def write_csv(df: pd.DataFrame, dest: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Write ``df`` as CSV atomically (no index unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_path(dest) as tmp:
        df.to_csv(tmp, **kwargs)
    return Path(dest)


def write_parquet(df: pd.DataFrame, dest: str | os.PathLike[str]) -> Path:
    with atomic_path(dest) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(dest)


def write_json(obj: Any, dest: str | os.PathLike[str]) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str, ensure_ascii=False) + "\n", encoding="utf-8")
    return Path(dest)


def read_json_object(path: str | os.PathLike[str], what: str, remedy: str) -> dict[str, Any]:
    """A state file written by :func:`write_json` holding one JSON object; ``{}`` when there is
    none yet. Unreadable or not an object: a one-line :class:`LeadDataError` naming the file,
    ``what`` it is and the ``remedy``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError as exc:
        raise LeadDataError(f"{path}: not a readable {what} (not UTF-8 text: {exc.reason} at byte {exc.start}); {remedy}") from None
    try:
        state = json.loads(text)
    except ValueError as exc:
        raise LeadDataError(f"{path}: not a readable {what} ({exc}); {remedy}") from None
    if not isinstance(state, dict):
        raise LeadDataError(f"{path}: not a readable {what} (not a JSON object); {remedy}")
    return state


def write_text(text: str, dest: str | os.PathLike[str]) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(dest)


def save_figure(fig: Any, dest: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically as PNG."""
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    return Path(dest)


def check_output(
    dest: str | os.PathLike[str],
    *,
    inputs: Sequence[str | os.PathLike[str]] = (),
    protected: Sequence[str | os.PathLike[str]] = (),
    folder: bool = False,
) -> Path:
    """Refuse an output path that would destroy an input (same path, or the same file
    through a link), lies inside a protected folder (the raw exports), or cannot be written;
    the message says which. ``folder``: the output is a folder of parts, not a file."""
    dest = Path(dest)
    real = dest.resolve()
    for src in map(Path, inputs):
        same = real == src.resolve() or (dest.exists() and src.exists() and os.path.samefile(dest, src))
        if same or (folder and src.resolve().is_relative_to(real)):
            raise OutputPathError(
                f"{dest}: this is the input ({src.name}); writing there would destroy it — choose another output path"
            )
    for keep in map(Path, protected):
        if real.is_relative_to(keep.resolve()) or (folder and keep.resolve().is_relative_to(real)):
            raise OutputPathError(f"{dest}: inside {keep}, which holds the client's raw exports and is never written")
    if dest.is_dir() and not folder:
        raise OutputPathError(f"{dest}: is a folder; give a file name for the output")
    if dest.exists() and folder and not dest.is_dir():
        raise OutputPathError(f"{dest}: is a file; the output of this engine is a folder of parts")
    parent = next((p for p in real.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise OutputPathError(f"{dest}: {parent} is a file, not a folder")
    if parent is not None and not os.access(parent, os.W_OK):
        raise OutputPathError(f"{dest}: the folder {parent} is not writable")
    return dest


def file_blocks(path: str | os.PathLike[str], size: int = 1 << 24) -> Iterator[bytes]:
    """A file's bytes, block by block (a large export is never read whole)."""
    with open(path, "rb") as fh:
        while block := fh.read(size):
            yield block


@dataclass(frozen=True)
class NotUtf8:
    """Where a file stops being UTF-8: its first such byte, the line holding it (1-based), and
    why (the decoder's reason)."""

    byte: int
    line: int
    reason: str


def first_non_utf8(path: str | os.PathLike[str]) -> NotUtf8 | None:
    """None when the whole file is UTF-8, else where it stops being (read block by block)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    done, lines = 0, 1
    for block in file_blocks(path):
        try:
            decoder.decode(block, final=False)
        except UnicodeDecodeError as exc:
            return NotUtf8(done + exc.start, lines + block.count(b"\n", 0, exc.start), exc.reason)
        done += len(block)
        lines += block.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        return NotUtf8(done, lines, exc.reason)
    return None
