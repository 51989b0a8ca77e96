"""Archived model versions: listing the sets kept under ``04_Modelos/versions/`` and rolling
back to one (every model it holds, verified first, and its model card)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leadscoring.artifacts import (
    MODEL_CARD,
    MODEL_SET,
    SCORE_MODEL,
    ModelIntegrityError,
    list_model_sets,
    read_manifest,
    restore_model_set,
    sha256_file,
)
from leadscoring.config import ProjectConfig
from leadscoring.errors import LeadDataError
from leadscoring.tracking import ROLLBACK_EVENT, update_tracking


def list_versions(cfg: ProjectConfig) -> list[Path]:
    """Archived model sets, oldest model first."""
    return list_model_sets(cfg.path("models_dir"))


def _score_sha(folder: Path) -> str | None:
    try:
        return str(read_manifest(folder / SCORE_MODEL).get("sha256"))
    except ModelIntegrityError:
        return None


def describe_versions(cfg: ProjectConfig) -> list[dict[str, Any]]:
    """One row per archived set: name, models held, whether it holds the current scoring model."""
    models = cfg.path("models_dir")
    current = sha256_file(models / SCORE_MODEL) if (models / SCORE_MODEL).is_file() else None
    rows = []
    for v in list_versions(cfg):
        rows.append(
            {
                "version": v.name,
                "models": [n for n in MODEL_SET if (v / n).is_file()],
                "current": current is not None and _score_sha(v) == current,
            }
        )
    return rows


@dataclass
class RollbackResult:
    version: Path
    archived: Path | None
    manifests: dict[str, dict[str, Any]]
    card_restored: bool

    def summary(self) -> str:
        lines = [f"restored {self.version.name}:"]
        for name, info in self.manifests.items():
            lines.append(f"  {name:<24} {str(info.get('sha256'))[:12]}  created {info.get('created_at')}")
        if self.card_restored:
            lines.append(f"  {MODEL_CARD} restored")
        if self.archived:
            lines.append(f"the replaced set is archived in {self.archived}")
        return "\n".join(lines)


def rollback(cfg: ProjectConfig, version: str | None = None) -> RollbackResult:
    """Restore an archived model set: every model it holds (verified first), and its card.

    Default version: the newest archived set that is not the current one. The current set is
    archived before anything is replaced.
    """
    versions = list_versions(cfg)
    if not versions:
        raise LeadDataError("no archived model versions to roll back to")
    models = cfg.path("models_dir")
    if version is None:
        current = sha256_file(models / SCORE_MODEL) if (models / SCORE_MODEL).is_file() else None
        others = [v for v in versions if current is None or _score_sha(v) != current]
        if not others:
            raise LeadDataError(f"every archived version holds the current model; have {[v.name for v in versions]}")
        chosen = others[-1]
    else:
        chosen = next((v for v in versions if v.name == version), None)
        if chosen is None:
            raise LeadDataError(f"unknown version {version!r}; have {[v.name for v in versions]}")
    archived, manifests = restore_model_set(chosen, models, extra=[cfg.path("docs_dir") / MODEL_CARD])
    result = RollbackResult(chosen, archived, manifests, card_restored=(chosen / MODEL_CARD).is_file())
    restored = [*manifests, *([MODEL_CARD] if result.card_restored else [])]
    event = {
        "event": ROLLBACK_EVENT,
        "status": "ok",
        "version": chosen.name,
        "archived": str(archived) if archived else None,
        "model_sha256": read_manifest(models / SCORE_MODEL).get("sha256") if (models / SCORE_MODEL).is_file() else None,
        "details": f"restored {', '.join(restored)}",
    }
    update_tracking(cfg, event=event)
    return result
