"""Persisting fitted models with a manifest, and refusing to load a tampered or
incompatible one.

``save_model`` writes ``NAME.pkl`` and ``NAME.json`` (the manifest) atomically. The
manifest records the pickle's SHA-256, the library versions it was made with, a
fingerprint of the training data, the feature list, metrics and the creation time.
``load_model`` checks the hash and the versions *before* unpickling.

The project's models form one set (:data:`MODEL_SET`). ``replace_model_set`` is the one way
a set is replaced (by a run promotion, a challenger promotion or a rollback): it archives the
current set into ``versions/<created_at>_<sha12>/``, then has the caller put the new set in
place, then writes the promotion record (:data:`PROMOTION_FILE`) last. ``restore_model_set``
verifies an archived set and puts it back as a whole through it.

The promotion record names the models of the promoted set (file name → the SHA-256 its
manifest records): a reader whose models' manifests match it holds one complete promotion,
never a set half-way through a replacement (the service's hot reload watches it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from leadscoring.errors import one_line
from leadscoring.io import atomic_path, write_json

log = logging.getLogger(__name__)

T = TypeVar("T")

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
        info = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelIntegrityError(f"{mpath}: manifest is not valid JSON ({one_line(exc, 200)})") from None
    if not isinstance(info, dict):
        raise ModelIntegrityError(f"{mpath}: manifest is not a JSON object; refusing to load an unverified pickle")
    return info


def verify_model(path: str | os.PathLike[str], *, check_versions: bool = True) -> dict[str, Any]:
    """Check the pickle against its manifest; returns the manifest or raises ModelIntegrityError."""
    path = Path(path)
    if not path.is_file():
        raise ModelIntegrityError(f"model file not found: {path} (run `leadscoring run` in the project first)")
    info = read_manifest(path)
    digest = sha256_file(path)
    if digest != info.get("sha256"):
        raise ModelIntegrityError(
            f"{path.name}: SHA-256 {digest[:12]}… does not match the manifest's {str(info.get('sha256'))[:12]}…; "
            "the file was modified or replaced; refusing to load it"
        )
    if check_versions:
        check_versions_match(info, path.name)
    return info


def check_versions_match(info: dict[str, Any], name: str, where: str = "here") -> None:
    """Refuse a model whose library versions (major.minor) differ from this environment's;
    ``where`` names this environment in the message (e.g. a cluster worker)."""
    here = library_versions()
    bad = [
        f"{lib} {made} ({where} {here.get(lib, 'not installed')})"
        for lib, made in info.get("versions", {}).items()
        if _major_minor(str(made)) != _major_minor(here.get(lib, "none"))
    ]
    if bad:
        raise ModelIntegrityError(f"{name} was made with " + ", ".join(bad) + "; reinstall those versions or retrain the model")


def model_from_bytes(data: bytes, info: dict[str, Any], *, where: str = "here") -> Any:
    """Unpickle a model sent as bytes (e.g. to a cluster worker) after checking them against
    their manifest: the SHA-256 and this environment's library versions."""
    digest = hashlib.sha256(data).hexdigest()
    name = str(info.get("file", "model"))
    if digest != info.get("sha256"):
        raise ModelIntegrityError(
            f"{name}: received bytes with SHA-256 {digest[:12]}…, not the manifest's "
            f"{str(info.get('sha256'))[:12]}…; refusing to load them"
        )
    check_versions_match(info, name, where)
    return pickle.loads(data)  # noqa: S301 - verified against its manifest above


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


# -- model sets: archive and restore the project's models together ------------------------

#: The project's model files (in ``paths.models_dir``) and the model card (in ``paths.docs_dir``).
SCORE_MODEL = "lead_scoring_model.pkl"
SEGMENT_MODEL = "segment_model.pkl"
RULE_MODEL = "rule_scorer.pkl"
MODEL_CARD = "model_card.md"
#: The models that make up one consistent set: archived together before any of them is
#: replaced, and restored together by ``rollback``.
MODEL_SET = (SCORE_MODEL, SEGMENT_MODEL, RULE_MODEL)
VERSIONS_DIR = "versions"
SET_FILE = "model_set.json"
#: The promotion record in ``paths.models_dir``, written by ``replace_model_set`` after the
#: new set is in place (its last write): ``{"promoted_at", "models": {file name: sha256}}``.
PROMOTION_FILE = "promotion.json"
#: Reports for people (in ``paths.results_dir``): the client summary notebook 09 writes, and
#: the monitoring report ``leadscoring monitor`` writes; ``latest/index.html`` links them.
CLIENT_REPORT = "client_report.html"
#: The log of production runs and nightly cycles (in ``paths.docs_dir``): one JSON line per
#: run, and per step of a cycle.
RUN_LOG = "run_log.jsonl"
MONITORING_REPORT = "monitoring.html"
#: The monitoring report's figures as data (beside it): what notebook 09 and alerts read.
MONITORING_DATA = "monitoring.json"


def _version_stamp(model: Path) -> str:
    """``<created_at>_<sha12>`` of a model, from its manifest (or the file itself)."""
    try:
        info = read_manifest(model)
        created, digest = str(info["created_at"]), str(info["sha256"])
    except (ModelIntegrityError, KeyError):
        created = datetime.fromtimestamp(model.stat().st_mtime, UTC).isoformat(timespec="seconds")
        digest = sha256_file(model)
    return f"{created.replace(':', '').replace('+0000', 'Z')}_{digest[:12]}"


def _set_files(models_dir: Path, names: Sequence[str], extra: Sequence[Path]) -> list[Path]:
    files = []
    for name in names:
        model = models_dir / name
        if model.is_file():
            files.append(model)
            if manifest_path(model).is_file():
                files.append(manifest_path(model))
    return files + [Path(p) for p in extra if Path(p).is_file()]


def _same_content(folder: Path, files: Sequence[Path]) -> bool:
    held = {p.name for p in folder.iterdir() if p.is_file() and p.name != SET_FILE}
    if held != {p.name for p in files}:
        return False
    return all(sha256_file(folder / p.name) == sha256_file(p) for p in files)


def _archive_model_set(
    models_dir: str | os.PathLike[str], names: Sequence[str] = MODEL_SET, extra: Sequence[str | os.PathLike[str]] = ()
) -> Path | None:
    """Copy the current models (and their manifests) into one version folder
    ``models_dir/versions/<created_at>_<sha12>/``, named after the first model of ``names``
    that exists; ``extra`` files (e.g. the model card) go into the same folder.

    The folder appears complete or not at all (written beside it, then renamed). An
    existing folder holding the same files is reused; one holding other files gets a
    ``-2``, ``-3``… suffix. Returns the folder, or None when there is no model to archive.
    """
    models_dir = Path(models_dir)
    files = _set_files(models_dir, names, [Path(p) for p in extra])
    models = [p for p in files if p.name in names]
    if not models:
        return None
    versions = models_dir / VERSIONS_DIR
    versions.mkdir(parents=True, exist_ok=True)
    base = _version_stamp(models[0])
    dest, n = versions / base, 1
    while dest.exists():
        if dest.is_dir() and _same_content(dest, files):
            return dest
        n += 1
        dest = versions / f"{base}-{n}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{base}.", dir=versions))
    try:
        for p in files:
            shutil.copy2(p, tmp / p.name)
        write_json(
            {"archived_at": datetime.now(UTC).isoformat(timespec="seconds"), "files": {p.name: sha256_file(p) for p in files}},
            tmp / SET_FILE,
        )
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("archived %s into %s", ", ".join(p.name for p in models), dest)
    return dest


def list_model_sets(models_dir: str | os.PathLike[str]) -> list[Path]:
    """Archived version folders, oldest model first."""
    folder = Path(models_dir) / VERSIONS_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _copy_atomic(src: Path, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        shutil.copy2(src, tmp)


def replace_model_set(
    models_dir: str | os.PathLike[str],
    put_in_place: Callable[[Path | None], T],
    names: Sequence[str] = MODEL_SET,
    extra: Sequence[str | os.PathLike[str]] = (),
) -> tuple[Path | None, T]:
    """Replace the project's model set: archive the current one, then put the new one in place.

    The current models of ``names`` in ``models_dir``, their manifests and the ``extra`` files
    (e.g. the model card) are copied into one version folder under ``models_dir/versions/``
    (complete or not at all; an existing folder holding the same files is reused), so
    ``rollback`` can restore them; only then is ``put_in_place(archived folder)`` called to
    write the new set; when it returns, the promotion record (:data:`PROMOTION_FILE`) is written
    last. A ``put_in_place`` that raises (or is interrupted) leaves the previous record, and the
    files it had already replaced are put back from the archive (files of the set that did not
    exist are removed), so the project keeps the set it had. Returns (the archived folder, or None
    when there was no model to archive; what ``put_in_place`` returned). Every replacement of the set goes through here:
    a run promotion bringing new models, a challenger promotion, a rollback.
    """
    models = Path(models_dir)
    targets = [*(models / n for n in names), *(manifest_path(models / n) for n in names), *map(Path, extra)]
    existed = {p for p in targets if p.is_file()}
    archived = _archive_model_set(models_dir, names, extra)
    backup = None  # no model to archive, but a card: kept aside while the new set goes in
    if archived is None and existed:
        backup = Path(tempfile.mkdtemp(prefix=".set-backup-", dir=models))
        for p in existed:
            shutil.copy2(p, backup / p.name)
    try:
        placed = put_in_place(archived)
    except BaseException:
        _put_back(archived or backup, targets, existed)
        raise
    finally:
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
    _record_promotion(models, names)  # last: the set is complete
    return archived, placed


def _put_back(archived: Path | None, targets: Sequence[Path], existed: set[Path]) -> None:
    """After a failed replacement: each of ``targets`` as it was, copied back from the
    ``archived`` folder, or removed when it did not exist."""
    for dest in targets:
        kept = archived / dest.name if archived is not None else None
        if dest in existed and kept is not None and kept.is_file():
            _copy_atomic(kept, dest)
        elif dest not in existed:
            dest.unlink(missing_ok=True)
    log.warning("model set replacement failed: the previous set is back in place")


def _record_promotion(models_dir: Path, names: Sequence[str]) -> dict[str, Any]:
    """Write the promotion record of the set now in ``models_dir`` (atomically); returns it.
    A model without a readable manifest is recorded with ``None`` (a reader refuses it)."""
    models: dict[str, str | None] = {}
    for name in names:
        if (models_dir / name).is_file():
            try:
                models[name] = str(read_manifest(models_dir / name)["sha256"])
            except (ModelIntegrityError, KeyError):
                models[name] = None
    record = {"promoted_at": datetime.now(UTC).isoformat(timespec="microseconds"), "models": models}
    write_json(record, models_dir / PROMOTION_FILE)
    log.info("promotion recorded: %s", ", ".join(f"{n} {str(s)[:12]}" for n, s in models.items()))
    return record


def read_promotion(models_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The promotion record of ``models_dir`` (see :data:`PROMOTION_FILE`); None when the set
    was never replaced through :func:`replace_model_set`. ModelIntegrityError when unreadable."""
    try:
        data = (Path(models_dir) / PROMOTION_FILE).read_bytes()
    except FileNotFoundError:
        return None
    return parse_promotion(data)


def parse_promotion(data: bytes) -> dict[str, Any]:
    """A promotion record from its bytes; ModelIntegrityError when it is not one."""
    try:
        record = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelIntegrityError(f"{PROMOTION_FILE}: not valid JSON ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("models"), dict):
        raise ModelIntegrityError(f"{PROMOTION_FILE}: has no 'models' mapping")
    return record


def restore_model_set(
    version: str | os.PathLike[str],
    models_dir: str | os.PathLike[str],
    names: Sequence[str] = MODEL_SET,
    extra: Sequence[str | os.PathLike[str]] = (),
) -> tuple[Path | None, dict[str, dict[str, Any]]]:
    """Put the models held by ``version`` back into ``models_dir``, as one set.

    Every model of the version is loaded and verified (hash, library versions, code) before
    any file is replaced; then the current set (with the ``extra`` files) is archived; then
    each model and its manifest are replaced atomically, and each ``extra`` file the version
    holds (e.g. the model card) is put back where it was archived from. Models of ``names``
    (and ``extra`` files) that the version does not hold are left as they are. Returns
    (folder of the archived current set, {model file name: restored manifest}).
    """
    version, models_dir = Path(version), Path(models_dir)
    held = [n for n in names if (version / n).is_file()]
    if not held:
        raise ModelIntegrityError(f"{version.name}: holds none of {list(names)}; nothing to restore")
    manifests = {n: load_model(version / n)[1] for n in held}  # raises before anything is touched

    def put_back(_archived: Path | None) -> None:
        for n in held:
            _copy_atomic(version / n, models_dir / n)  # a reader between these two sees a hash mismatch: refused
            _copy_atomic(manifest_path(version / n), manifest_path(models_dir / n))
        for dest in map(Path, extra):
            if (version / dest.name).is_file():
                _copy_atomic(version / dest.name, dest)

    archived, _ = replace_model_set(models_dir, put_back, names, extra)
    log.info("restored %s from %s", ", ".join(held), version)
    return archived, manifests
