"""Persisting fitted models with a manifest, and refusing to load a tampered or
incompatible one.

``save_model`` writes ``NAME.pkl`` and ``NAME.json`` (the manifest) atomically. The
manifest records the pickle's SHA-256, the library versions it was made with, a
fingerprint of the training data, the feature list, metrics and the creation time.
``load_model`` checks the hash and the versions *before* unpickling.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from .io import atomic_path, write_json

log = logging.getLogger(__name__)

#: Libraries whose version must match (major.minor) for a pickle to be trusted.
TRACKED = ("scikit-learn", "xgboost-cpu", "xgboost", "imbalanced-learn", "numpy", "pandas", "leadscoring")


class ModelIntegrityError(RuntimeError):
    """The model file does not match its manifest or this environment."""


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in TRACKED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _major_minor(v: str) -> str:
    return ".".join(v.split(".")[:2])


def manifest_path(model_path: str | os.PathLike[str]) -> Path:
    return Path(model_path).with_suffix(".json")


def save_model(obj: Any, path: str | os.PathLike[str], **manifest: Any) -> dict[str, Any]:
    """Pickle ``obj`` to ``path`` and write its manifest beside it; returns the manifest.

    Keyword arguments (e.g. ``kind``, ``features``, ``metrics``, ``data_fingerprint``) are
    stored in the manifest as given.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        digest = sha256_file(tmp)
        info = {
            "file": path.name,
            "sha256": digest,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": library_versions(),
            "python_implementation": sys.implementation.name,
            **manifest,
        }
        write_json(info, manifest_path(path))
    log.info("saved %s (sha256 %s…)", path, digest[:12])
    return info


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    mpath = manifest_path(path)
    if not mpath.is_file():
        raise ModelIntegrityError(f"{Path(path).name}: manifest {mpath.name} not found; refusing to load an unverified pickle")
    try:
        return json.loads(mpath.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelIntegrityError(f"{mpath.name}: manifest is not valid JSON ({exc})") from None


def verify_model(path: str | os.PathLike[str], *, check_versions: bool = True) -> dict[str, Any]:
    """Check the pickle against its manifest; returns the manifest or raises ModelIntegrityError."""
    path = Path(path)
    if not path.is_file():
        raise ModelIntegrityError(f"model file not found: {path} (run `leadscoring run` or `make run` first)")
    info = read_manifest(path)
    digest = sha256_file(path)
    if digest != info.get("sha256"):
        raise ModelIntegrityError(
            f"{path.name}: SHA-256 {digest[:12]}… does not match the manifest's {str(info.get('sha256'))[:12]}…; "
            "the file was modified or replaced; refusing to load it"
        )
    if check_versions:
        here = library_versions()
        bad = [
            f"{lib} {made} (here {here.get(lib, 'not installed')})"
            for lib, made in info.get("versions", {}).items()
            if _major_minor(str(made)) != _major_minor(here.get(lib, "none"))
        ]
        if bad:
            raise ModelIntegrityError(
                f"{path.name} was made with " + ", ".join(bad) + "; reinstall those versions or retrain the model"
            )
    return info


def load_model(path: str | os.PathLike[str], *, check_versions: bool = True) -> tuple[Any, dict[str, Any]]:
    """Verify, then unpickle. Returns ``(model, manifest)``."""
    info = verify_model(path, check_versions=check_versions)
    with open(path, "rb") as fh:
        try:
            model = pickle.load(fh)  # noqa: S301 - verified against its manifest above
        except (AttributeError, ImportError, ModuleNotFoundError) as exc:
            raise ModelIntegrityError(
                f"{Path(path).name} was made by another version of the code ({exc}); retrain it (make run)"
            ) from None
    return model, info
