"""The feedback loop: merge newly known outcomes, retrain, champion vs challenger, drift.

Half of the new outcomes (stratified, seeded) are held out; the challenger — the
champion's exact recipe, refit on the history plus the other half — and the champion are
compared on those held-out leads, which neither has seen. The challenger is promoted only
if it is not worse (ROC-AUC not lower and Brier not higher than the champion's, beyond
``tolerance``). Every replaced model is archived under ``04_Modelos/versions/`` so
``rollback`` can restore it.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import train_test_split

from .artifacts import load_model, manifest_path, read_manifest, save_model
from .config import ProjectConfig
from .data import LeadDataError, fingerprint, read_leads, validate_leads
from .evaluation import classification_metrics
from .io import write_csv, write_json, write_parquet
from .monitoring import drift_report
from .scoring import SCORE_MODEL

log = logging.getLogger(__name__)
MIN_OUTCOMES = 20


@dataclass
class RetrainResult:
    promoted: bool
    champion: dict[str, float]
    challenger: dict[str, float]
    drift: pd.DataFrame
    new_leads: int
    holdout_leads: int
    archived: Path | None = None

    def summary(self) -> str:
        verdict = "challenger promoted" if self.promoted else "champion kept"
        alerts = self.drift[self.drift["level"] != "stable"]["variable"].tolist()
        return (f"{self.new_leads} new outcomes ({self.holdout_leads} held out): champion AUC "
                f"{self.champion['roc_auc']:.4f} / Brier {self.champion['brier']:.4f}, challenger AUC "
                f"{self.challenger['roc_auc']:.4f} / Brier {self.challenger['brier']:.4f} -> {verdict}; "
                f"drift watch/alert: {alerts or 'none'}")


def history_path(cfg: ProjectConfig) -> Path:
    return cfg.path("work_dir") / "history.parquet"


def load_history(cfg: ProjectConfig) -> pd.DataFrame:
    """All leads with known outcomes so far (the raw export until a first retrain)."""
    path = history_path(cfg)
    return pd.read_parquet(path) if path.is_file() else read_leads(cfg.path("raw_data"), cfg)


def load_outcomes(cfg: ProjectConfig, outcomes: str | os.PathLike[str],
                  leads: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """New outcomes as full lead rows: either the outcomes file has every column, or it has
    only id + target and the features come from ``leads`` (raw layout)."""
    d = cfg.data
    raw = pd.read_csv(outcomes, sep=d.separator, dtype=str, keep_default_na=False)
    name = Path(outcomes).name
    for col in (d.id_column, d.target_column):
        if col not in raw.columns:
            raise LeadDataError(f"{name}: missing required column '{col}'")
    if set(d.columns.all) <= set(raw.columns):
        return validate_leads(raw, cfg, origin=name, from_file=True)
    if leads is None:
        raise LeadDataError(f"{name}: has only id and outcome; pass the leads' features with --leads")
    feats = read_leads(leads, cfg, require_target=False)
    ids = raw[[d.id_column, d.target_column]]
    unknown = sorted(set(ids[d.id_column].str.strip()) - set(feats[d.id_column]))
    if unknown:
        raise LeadDataError(f"{name}: {len(unknown)} id(s) not found in {Path(leads).name}, e.g. {unknown[:5]}")
    merged = feats.merge(ids.assign(**{d.id_column: ids[d.id_column].str.strip()}), on=d.id_column)
    return validate_leads(merged, cfg, origin=name)


def _archive(models: Path) -> Path:
    info = read_manifest(models / SCORE_MODEL)
    stamp = str(info.get("created_at", datetime.now(UTC).isoformat())).replace(":", "").replace("+0000", "Z")
    dest = models / "versions" / f"{stamp}_{info['sha256'][:12]}"
    dest.mkdir(parents=True, exist_ok=True)
    for p in (models / SCORE_MODEL, manifest_path(models / SCORE_MODEL)):
        shutil.copy2(p, dest / p.name)
    return dest


def retrain(cfg: ProjectConfig, outcomes: str | os.PathLike[str], leads: str | os.PathLike[str] | None = None,
            tolerance: float = 0.005) -> RetrainResult:
    d = cfg.data
    models = cfg.path("models_dir")
    champion, manifest = load_model(models / SCORE_MODEL)
    new = load_outcomes(cfg, outcomes, leads)
    if len(new) < MIN_OUTCOMES or new[d.target_column].nunique() < 2:
        raise LeadDataError(f"need at least {MIN_OUTCOMES} new outcomes with both classes, got {len(new)}")
    history = load_history(cfg)
    new_train, holdout = train_test_split(new, test_size=0.5, stratify=new[d.target_column], random_state=cfg.split.seed)
    base = history[~history[d.id_column].isin(new[d.id_column])]
    train = pd.concat([base, new_train], ignore_index=True)
    challenger = clone(champion).fit(train.drop(columns=[d.target_column]), train[d.target_column])
    Xh, yh = holdout.drop(columns=[d.target_column]), holdout[d.target_column]
    m_champ = classification_metrics(yh, champion.predict_proba(Xh)[:, 1])
    m_chall = classification_metrics(yh, challenger.predict_proba(Xh)[:, 1])
    promoted = m_chall["roc_auc"] >= m_champ["roc_auc"] - tolerance and m_chall["brier"] <= m_champ["brier"] + tolerance
    X_new = new.drop(columns=[d.target_column])
    drift = drift_report(base, new, d.columns.numeric, d.columns.categorical,
                         scores=(champion.predict_proba(base.drop(columns=[d.target_column]))[:, 1],
                                 champion.predict_proba(X_new)[:, 1]))
    archived = None
    if promoted:
        archived = _archive(models)
        keep = {k: v for k, v in manifest.items() if k not in {"file", "sha256", "created_at", "versions"}}
        keep.update(data_fingerprint=fingerprint(train), training_rows=len(train), retrained_from=manifest["sha256"],
                    retrain_holdout={"champion": m_champ, "challenger": m_chall, "rows": len(holdout)})
        save_model(challenger, models / SCORE_MODEL, **keep)
    write_parquet(pd.concat([base, new], ignore_index=True), history_path(cfg))
    results = cfg.path("results_dir")
    write_csv(drift, results / "drift_report.csv")
    result = RetrainResult(promoted, m_champ, m_chall, drift, len(new), len(holdout), archived)
    write_json({"promoted": promoted, "champion": m_champ, "challenger": m_chall, "archived": archived,
                "at": datetime.now(UTC).isoformat(timespec="seconds")}, results / "retrain_report.json")
    log.info(result.summary())
    return result


def list_versions(cfg: ProjectConfig) -> list[Path]:
    folder = cfg.path("models_dir") / "versions"
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def rollback(cfg: ProjectConfig, version: str | None = None) -> dict[str, Any]:
    """Restore an archived model (default: the newest); the current one is archived first."""
    versions = list_versions(cfg)
    if not versions:
        raise LeadDataError("no archived model versions to roll back to")
    chosen = versions[-1] if version is None else next((v for v in versions if v.name == version), None)
    if chosen is None:
        raise LeadDataError(f"unknown version {version!r}; have {[v.name for v in versions]}")
    load_model(chosen / SCORE_MODEL)  # verify before restoring
    models = cfg.path("models_dir")
    _archive(models)
    for name in (SCORE_MODEL, manifest_path(Path(SCORE_MODEL)).name):
        tmp = models / f".{name}.rollback"
        shutil.copy2(chosen / name, tmp)
        os.replace(tmp, models / name)
    return read_manifest(models / SCORE_MODEL)
