"""A run's staging folder and what run promotion does with it: where a declared product is
staged, seeding the staging folder for a partial run, which models of the set are new, and
copying the staged products (file by file) and folders (``latest/``) into place atomically."""

from __future__ import annotations

import shutil
from pathlib import Path

from leadscoring.artifacts import MODEL_SET, PROMOTION_FILE, sha256_file
from leadscoring.config import ProjectConfig
from leadscoring.io import atomic_path, replace_folder
from leadscoring.serving.history import LEGACY_SUFFIXES, history_folder


def product_path(cfg: ProjectConfig, staging: Path, product: str) -> Path:
    """``models_dir/x.pkl`` → the staged path of ``x.pkl`` in the configured models folder."""
    key, _, rest = product.partition("/")
    if key in type(cfg.paths).model_fields:
        return staging / getattr(cfg.paths, key) / rest
    return staging / product


def copy_products(staging: Path, root: Path) -> list[Path]:
    """Copy every staged product into the project, each file replaced atomically; returns the
    files written."""
    done = []
    for src in sorted(p for p in staging.rglob("*") if p.is_file()):
        dest = root / src.relative_to(staging)
        with atomic_path(dest) as tmp:
            shutil.copy2(src, tmp)
        done.append(dest)
    return done


def seed_staging(cfg: ProjectConfig, staging: Path) -> None:
    """For a partial run (``--only``): start from the current products, so a notebook
    finds what earlier notebooks wrote in previous runs."""
    folder = history_folder(cfg.path("score_history"))  # appended in place, never staged: copying it back would lose rows
    history = [folder.name, *(folder.name + s for s in LEGACY_SUFFIXES)]  # and a single-file history not migrated yet
    for key in ("validation_dir", "work_dir", "models_dir", "results_dir"):
        src = cfg.root / getattr(cfg.paths, key)
        if not src.is_dir():
            continue
        # Archives stay where they are; the promotion record is written by the promotion itself.
        own = {"results_dir": ("runs", "latest"), "models_dir": ("versions", PROMOTION_FILE)}.get(key, ())
        ignore = shutil.ignore_patterns(*own, *history, *(f"{h}.lock" for h in history), *(f".{h}.*" for h in history))
        shutil.copytree(src, staging / getattr(cfg.paths, key), ignore=ignore, dirs_exist_ok=True)


def new_models(current: Path, staged: Path) -> list[str]:
    """Model files of the set that the run staged and that differ from the project's."""
    return [
        n
        for n in MODEL_SET
        if (staged / n).is_file() and not ((current / n).is_file() and sha256_file(current / n) == sha256_file(staged / n))
    ]


def replace_dir(src: Path, dest: Path) -> None:
    """Replace the folder ``dest`` with a copy of ``src``: the copy is made beside it, then
    put in place by :func:`~leadscoring.io.replace_folder` (the old folder back if that fails)."""
    tmp = dest.with_name(f".{dest.name}.new")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    try:
        replace_folder(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
