"""Inputs and outputs of cluster scoring as paths or URLs, through fsspec: ``s3://``,
``gs://``, ``abfs://`` (with the matching extra: s3fs, gcsfs, adlfs), ``file://`` and
plain paths. Credentials come only from the environment or the storage library's standard
chain (e.g. ``AWS_*`` variables, ``~/.aws``, instance roles); nothing here reads or logs them.

An output folder is committed so that a failed job never leaves a destination that looks
complete: the parts are written under a temporary prefix beside it, and only when every
part is there are the old parts removed, the new ones moved in and ``_SUCCESS`` written
last (on a local disk, the temporary folder is renamed over the destination).
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from leadscoring.errors import LeadDataError
from leadscoring.io import replace_folder

log = logging.getLogger(__name__)

SUCCESS = "_SUCCESS"


def _fs(url: str) -> tuple[Any, str]:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        scheme = url.split("://", 1)[0]
        extra = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "abfs": "adlfs", "az": "adlfs"}.get(scheme)
        hint = f" (pip install {extra})" if extra else ""
        raise LeadDataError(f"{url}: cannot open this storage{hint}: {str(exc).splitlines()[0]}") from None
    return fs, path


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> Path:
    return Path(url.removeprefix("file://"))


def expand(pattern: str) -> list[str]:
    """The files matching ``pattern`` (a path, URL or glob), as URLs of the same storage."""
    fs, path = _fs(pattern)
    found = sorted(fs.glob(path)) if any(c in path for c in "*?[") else ([path] if fs.isfile(path) else [])
    if not found:
        raise LeadDataError(f"{pattern}: no file matches")
    return [f if is_local(pattern) else fs.unstrip_protocol(f) for f in found]


def fetch(url: str, folder: Path) -> Path:
    """A local copy of ``url`` in ``folder`` (same file name, so errors name it); a local path
    is used in place."""
    if is_local(url):
        return local_path(url)
    fs, path = _fs(url)
    dest = folder / Path(path).name
    fs.get(path, str(dest))
    return dest


def publish(local_file: Path, url: str) -> None:
    """Upload (or copy) a finished part to ``url``."""
    if is_local(url):
        dest = local_path(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local_file, dest)
        return
    fs, path = _fs(url)
    fs.put(str(local_file), path)


def temporary_prefix(dest: str) -> str:
    """Where a job writes its parts before the commit: beside the destination, per job."""
    base = dest.rstrip("/")
    parent, name = base.rsplit("/", 1) if "/" in base else (".", base)
    return f"{parent}/.{name}.tmp-{uuid.uuid4().hex[:12]}"


def check_destination(dest: str) -> None:
    """A destination folder must be new, empty, or hold only scored parts."""
    fs, path = _fs(dest)
    if not fs.exists(path):
        return
    if fs.isfile(path):
        raise LeadDataError(f"{dest}: is a file; the dask engine writes a folder of parts")
    others = [p for p in fs.ls(path, detail=False) if not (Path(p).name.startswith("part-") or Path(p).name == SUCCESS)]
    if others:
        raise LeadDataError(f"{dest}: exists and holds other files than scored parts; choose a new or empty folder")


def commit(tmp: str, dest: str, parts: Sequence[str]) -> None:
    """Make the parts under ``tmp`` the destination's content, ``_SUCCESS`` last."""
    if is_local(dest):
        src, out = local_path(tmp), local_path(dest)
        (src / SUCCESS).touch()
        replace_folder(src, out)  # the previous output lives until the new one has its name
        return
    fs, path = _fs(dest)
    _, tmp_path = _fs(tmp)
    if fs.exists(path):
        old = [p for p in fs.ls(path, detail=False) if Path(p).name.startswith("part-") or Path(p).name == SUCCESS]
        if old:
            fs.rm(old)  # _SUCCESS goes first with them: from here the destination does not look complete
    for name in parts:
        fs.mv(f"{tmp_path}/{name}", f"{path}/{name}")
    fs.pipe(f"{path}/{SUCCESS}", b"")
    discard(tmp)
    log.info("committed %d parts to %s", len(parts), dest)


def discard(tmp: str) -> None:
    """Remove a job's temporary prefix (after a failure, or after the commit)."""
    try:
        if is_local(tmp):
            shutil.rmtree(local_path(tmp), ignore_errors=True)
            return
        fs, path = _fs(tmp)
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except OSError as exc:  # never hide the job's own error behind a clean-up error
        log.warning("could not remove %s: %s", tmp, exc)
