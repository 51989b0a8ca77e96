"""Atomic file writing: a product is either the old file or the complete new one."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from leadscoring.errors import OutputPathError


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it over ``dest`` on success.

    On any exception the temporary file is removed and ``dest`` is left untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; products are ordinary files
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


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
