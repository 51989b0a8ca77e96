"""The feedback loop: merge newly known outcomes, retrain, champion vs challenger, drift.

Half of the new outcomes (stratified, seeded) are held out; the challenger — the
champion's exact recipe, refit on the history plus the other half — and the champion are
compared on those held-out leads, which neither has seen. The challenger is promoted only
if it is not worse (:func:`should_promote`: ROC-AUC not lower and Brier not higher than
the champion's, beyond ``tolerance``).

On promotion the current model set (all models, manifests and the model card) is archived
under ``04_Modelos/versions/`` first; then the challenger is saved with its own measured
figures (never the champion's), the models that depend on the data are refit on the same
leads (the segment model; the rule scorer when its points are learned from data), and the
model card is regenerated. ``rollback`` restores an archived set as a whole.

"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import train_test_split

from leadscoring.artifacts import (
    MODEL_CARD,
    MODEL_SET,
    RULE_MODEL,
    SCORE_MODEL,
    SEGMENT_MODEL,
    ModelIntegrityError,
    archive_model_set,
    list_model_sets,
    load_model,
    read_manifest,
    restore_model_set,
    save_model,
    sha256_file,
)
from leadscoring.config import ProjectConfig
from leadscoring.errors import LeadDataError
from leadscoring.ingest.reader import read_raw
from leadscoring.ingest.schema import read_leads, validate_leads
from leadscoring.ingest.split import fingerprint
from leadscoring.io import atomic_path, write_csv, write_json, write_parquet, write_text
from leadscoring.loop.monitoring import drift_report
from leadscoring.training.evaluation import classification_metrics
from leadscoring.training.rules import RuleScorer

log = logging.getLogger(__name__)


MIN_OUTCOMES = 20






#: Manifest entries that describe one fitted model, never carried over to a refit one:
#: identity, and figures measured on the old model (cross-validation, validation split).
NOT_INHERITED = {"file", "sha256", "created_at", "versions", "python_implementation", "data_fingerprint",
                 "training_rows", "validation", "validation_rows", "cv", "metrics", "retrained_from",
                 "retrained_at", "retrain", "retrain_holdout"}


#: Differences within this of the tolerance count as equal (floating-point rounding).
EDGE = 1e-12


@dataclass
class RetrainResult:
    promoted: bool
    champion: dict[str, float]
    challenger: dict[str, float]
    drift: pd.DataFrame
    new_leads: int
    holdout_leads: int
    archived: Path | None = None
    refreshed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        verdict = "challenger promoted" if self.promoted else "champion kept"
        alerts = self.drift[self.drift["level"] != "stable"]["variable"].tolist()
        text = (f"{self.new_leads} new outcomes ({self.holdout_leads} held out): champion AUC "
                f"{self.champion['roc_auc']:.4f} / Brier {self.champion['brier']:.4f}, challenger AUC "
                f"{self.challenger['roc_auc']:.4f} / Brier {self.challenger['brier']:.4f} -> {verdict}; "
                f"drift watch/alert: {alerts or 'none'}")
        if self.promoted:
            done = "; ".join(f"{k}: {v}" for k, v in self.refreshed.items())
            text += f"\n{done}\nprevious models archived in {self.archived} (leadscoring rollback restores them)"
        return text


def should_promote(champion: Mapping[str, float], challenger: Mapping[str, float], tolerance: float) -> bool:
    """True when the challenger is not worse than the champion beyond ``tolerance``: its ROC-AUC
    at most ``tolerance`` below the champion's AND its Brier score at most ``tolerance`` above.

    A drop (or rise) exactly equal to the tolerance is allowed; differences within 1e-12 of it
    count as equal, so 0.80 vs 0.795 with tolerance 0.005 promotes despite float rounding.
    Missing or NaN figures never promote.
    """
    try:
        auc_drop = float(champion["roc_auc"]) - float(challenger["roc_auc"])
        brier_rise = float(challenger["brier"]) - float(champion["brier"])
    except (KeyError, TypeError, ValueError):
        return False
    if math.isnan(auc_drop) or math.isnan(brier_rise):
        return False
    return auc_drop <= tolerance + EDGE and brier_rise <= tolerance + EDGE


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
    name = Path(outcomes).name
    raw = read_raw(outcomes, cfg)  # the export's reader: one-line errors for empty, short rows, separator
    for col in (d.id_column, d.target_column):
        if col not in raw.columns:
            raise LeadDataError(f"{name}: missing required column '{col}'; found {list(raw.columns)}")
    if set(d.columns.all) <= set(raw.columns):
        return read_leads(outcomes, cfg)  # the same checks as the export (line numbers in messages)
    if leads is None:
        raise LeadDataError(f"{name}: has only id and outcome; pass the leads' features with --leads")
    feats = read_leads(leads, cfg, require_target=False)
    ids = raw[[d.id_column, d.target_column]]
    unknown = sorted(set(ids[d.id_column].str.strip()) - set(feats[d.id_column]))
    if unknown:
        raise LeadDataError(f"{name}: {len(unknown)} id(s) not found in {Path(leads).name}, e.g. {unknown[:5]}")
    merged = feats.merge(ids.assign(**{d.id_column: ids[d.id_column].str.strip()}), on=d.id_column)
    return validate_leads(merged, cfg, origin=name)


def _inherited(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe part of a manifest (kind, name, parameters, features…), for a refit model."""
    return {k: v for k, v in manifest.items() if k not in NOT_INHERITED}


def _rule_points_from_data(model: Any) -> bool:
    """Whether a rule scorer learns its points in ``fit`` (``RuleScorer(rules=None)``)."""
    est = model.steps[-1][1] if hasattr(model, "steps") else model
    return isinstance(est, RuleScorer) and est.rules is None


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _caveats(card: str | None) -> str:
    """The previous card's "Caveats" section (configuration-driven text), if it has one."""
    if not card:
        return ""
    m = re.search(r"^## Caveats\n.*?(?=^## |\Z)", card, flags=re.S | re.M)
    return m.group(0).rstrip() + "\n" if m else ""


def retrained_card(manifest: Mapping[str, Any], cfg: ProjectConfig, previous_card: str | None = None) -> str:
    """Markdown model card of a retrained model: says it was retrained, from which model, and
    shows its own figures (measured on the held-out new leads), next to the replaced model's
    on the same leads. The full run's cross-validation and validation figures belonged to the
    replaced model and are not repeated."""
    r = manifest["retrain"]
    own, champ = manifest["metrics"], r["champion_on_holdout"]
    cols = ["roc_auc", "average_precision", "brier", "log_loss", "gain_at_30pct"]
    table = "\n".join([
        "| model | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1),
        "| this model (challenger) | " + " | ".join(_fmt(own.get(c)) for c in cols) + " |",
        f"| replaced model `{manifest['retrained_from'][:12]}` | " + " | ".join(_fmt(champ.get(c)) for c in cols) + " |",
    ])
    buckets = ", ".join(f"{b.name} ≥ {b.min_score} → {b.action}" for b in cfg.scoring.buckets)
    refreshed = "\n".join(f"- {name}: {what}" for name, what in r.get("refreshed", {}).items()) or "- none"
    features = ", ".join(f"`{f}`" for f in manifest.get("features", []))
    return f"""# Model card: lead scoring model (retrained)

*Generated from `{manifest['file']}` and its manifest at {manifest['created_at']} by `leadscoring retrain`. Do not edit by hand.*

## Retrained
This model was **retrained** on {manifest['retrained_at']}: the recipe of model `{manifest['retrained_from'][:12]}`
refit on {manifest.get('training_rows')} leads (the outcome history plus half of {r['new_outcomes']} newly known
outcomes), fingerprint `{str(manifest.get('data_fingerprint'))[:16]}…`. It replaced that model because it was not
worse (tolerance {r['tolerance']}) on the other half: {own['rows']} new leads that neither model had seen.

Its own figures, {own['measured_on']}:

{table}

These are not comparable one to one with the validation figures of a full run (notebook 07 measures on
the validation split of notebook 01); run `leadscoring run` for a complete evaluation. The replaced model set
and its card are archived in `{r.get('archived') or 'the versions folder'}`; `leadscoring rollback` restores them.

Other models of the set:
{refreshed}

## What it is
- **Model**: {manifest.get('model_name')}; parameters {manifest.get('params') or 'default'}.
- **Output**: probability of `{cfg.data.target_column} = 1`; score = round(100 × probability); buckets: {buckets}.
- **Variables used**: {features or 'see the manifest'}.
- **SHA-256** `{manifest['sha256']}`; versions {manifest.get('versions')}.

{_caveats(previous_card)}"""


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
    X, y = train.drop(columns=[d.target_column]), train[d.target_column]
    challenger = clone(champion).fit(X, y)
    Xh, yh = holdout.drop(columns=[d.target_column]), holdout[d.target_column]
    m_champ = classification_metrics(yh, champion.predict_proba(Xh)[:, 1])
    m_chall = classification_metrics(yh, challenger.predict_proba(Xh)[:, 1])
    promoted = should_promote(m_champ, m_chall, tolerance)
    X_new = new.drop(columns=[d.target_column])
    drift = drift_report(base, new, d.columns.numeric, d.columns.categorical,
                         scores=(champion.predict_proba(base.drop(columns=[d.target_column]))[:, 1],
                                 champion.predict_proba(X_new)[:, 1]))
    archived, refreshed = None, {}
    if promoted:
        archived, refreshed = _promote(cfg, challenger, manifest, X, y, train, m_champ, m_chall,
                                       len(new), tolerance)
    write_parquet(pd.concat([base, new], ignore_index=True), history_path(cfg))
    results = cfg.path("results_dir")
    write_csv(drift, results / "drift_report.csv")
    result = RetrainResult(promoted, m_champ, m_chall, drift, len(new), len(holdout), archived, refreshed)
    write_json({"promoted": promoted, "tolerance": tolerance, "champion": m_champ, "challenger": m_chall,
                "archived": archived, "refreshed": refreshed,
                "at": datetime.now(UTC).isoformat(timespec="seconds")}, results / "retrain_report.json")
    log.info(result.summary())
    return result


def _promote(cfg: ProjectConfig, challenger: Any, manifest: dict[str, Any], X: pd.DataFrame, y: pd.Series,
             train: pd.DataFrame, m_champ: dict[str, float], m_chall: dict[str, float], new_outcomes: int,
             tolerance: float) -> tuple[Path | None, dict[str, str]]:
    """Refit the data-dependent models, archive the current set, then save the new set and card.

    Everything is fitted before anything is written, so a failing refit leaves the project
    as it was; each file is written atomically.
    """
    models, card = cfg.path("models_dir"), cfg.path("docs_dir") / MODEL_CARD
    now = datetime.now(UTC).isoformat(timespec="seconds")
    trained = {"data_fingerprint": fingerprint(train), "training_rows": len(train), "retrained_at": now}
    refreshed: dict[str, str] = {}
    to_save: list[tuple[Any, Path, dict[str, Any]]] = []

    seg_path = models / SEGMENT_MODEL
    if seg_path.is_file():
        segmenter, seg_manifest = load_model(seg_path)
        new_seg = clone(segmenter).fit(X, y)
        note = "refit on the same leads"
        if hasattr(new_seg, "set_names") and getattr(segmenter, "names_", None):
            # Segments are numbered by conversion rate (1 = best), so the names carry over; the
            # profiles behind them are re-measured only by notebook 08.
            new_seg.set_names(segmenter.names_, getattr(segmenter, "advice_", None))
            note += "; segment names kept from the previous model (re-profile with notebook 08)"
        to_save.append((new_seg, seg_path, {**_inherited(seg_manifest), **trained, "retrained_from": seg_manifest["sha256"],
                                            "retrain": {"note": note}}))
        refreshed[SEGMENT_MODEL] = note

    rule_path = models / RULE_MODEL
    if rule_path.is_file():
        rules, rule_manifest = load_model(rule_path)
        if _rule_points_from_data(rules):
            note = "points re-proposed from the same leads (weights of evidence)"
            to_save.append((clone(rules).fit(X, y), rule_path,
                            {**_inherited(rule_manifest), **trained, "retrained_from": rule_manifest["sha256"],
                             "retrain": {"note": note}}))
        else:
            # A fixed points table (marketing's CSV) is not learned from outcomes: refitting it
            # would only re-learn the cleaner's spellings and clipping, not the points. It is
            # kept as it is, and archived with the rest of the set.
            note = "kept: fixed points table (marketing's rules), not learned from outcomes"
        refreshed[RULE_MODEL] = note

    archived = archive_model_set(models, extra=[card])
    for obj, path, info in to_save:
        save_model(obj, path, **info)
    holdout_metrics = {**m_chall, "rows": int(m_chall.get("n", 0)),
                       "measured_on": (f"held-out new leads ({int(m_chall.get('n', 0))} of {new_outcomes} new outcomes, "
                                       "seen by neither model; not the validation split of notebook 01)")}
    info = save_model(challenger, models / SCORE_MODEL, **_inherited(manifest), **trained,
                      retrained_from=manifest["sha256"], metrics=holdout_metrics,
                      retrain={"champion_on_holdout": m_champ, "tolerance": tolerance, "new_outcomes": new_outcomes,
                               "archived": str(archived) if archived else None, "refreshed": refreshed})
    previous = card.read_text(encoding="utf-8") if card.is_file() else None
    write_text(retrained_card(info, cfg, previous), card)
    refreshed[MODEL_CARD] = "regenerated (states the retraining and this model's own figures)"
    return archived, refreshed


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
        rows.append({"version": v.name, "models": [n for n in MODEL_SET if (v / n).is_file()],
                     "current": current is not None and _score_sha(v) == current})
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
    card = cfg.path("docs_dir") / MODEL_CARD
    archived, manifests = restore_model_set(chosen, models, archive_extra=[card])
    restored_card = (chosen / MODEL_CARD).is_file()
    if restored_card:
        with atomic_path(card) as tmp:
            tmp.write_bytes((chosen / MODEL_CARD).read_bytes())
    return RollbackResult(chosen, archived, manifests, restored_card)

