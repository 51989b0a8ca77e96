"""The feedback loop: merge newly known outcomes, retrain, champion vs challenger, drift.

Outcomes pulled from the CRM train on the inputs each lead was scored with (the score
history, :mod:`leadscoring.loop.inputs`), never on its fields of today.

Half of the new outcomes (stratified, seeded) are held out; the challenger — the
champion's exact recipe, refit on the history plus the other half — and the champion are
compared on those held-out leads, which neither has seen. The challenger replaces the
champion (challenger promotion) only if it is not worse (:func:`should_promote`: ROC-AUC not
lower and Brier not higher than the champion's, beyond ``tolerance``).

On challenger promotion the current model set (all models, manifests and the model card) is
archived under ``04_Modelos/versions/`` first (:func:`leadscoring.artifacts.replace_model_set`);
then the challenger is saved with its own measured figures (never the champion's), the
models that depend on the data are refit on the same leads (the segment model; the rule
scorer when its points are learned from data), and the model card is regenerated.
``rollback`` (:mod:`leadscoring.loop.versions`) restores an archived set as a whole.

"""

from __future__ import annotations

import logging
import math
import os
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
    RULE_MODEL,
    SCORE_MODEL,
    SEGMENT_MODEL,
    load_model,
    read_manifest,
    replace_model_set,
    save_model,
)
from leadscoring.config import ProjectConfig
from leadscoring.crm.outcomes import latest_outcomes
from leadscoring.errors import LeadDataError
from leadscoring.ingest.load import read_leads
from leadscoring.ingest.reader import read_raw, row_locator
from leadscoring.ingest.schema import validate_leads
from leadscoring.ingest.split import fingerprint
from leadscoring.io import write_csv, write_json, write_parquet, write_text
from leadscoring.loop.inputs import FINAL, scored_inputs
from leadscoring.loop.monitoring import drift_report
from leadscoring.serving.scorer import to_score
from leadscoring.tracking import RETRAIN_EVENT, update_tracking
from leadscoring.training.evaluation import classification_metrics
from leadscoring.training.explanations import reason_book_for
from leadscoring.training.grades import grades_for
from leadscoring.training.pipeline import all_cores
from leadscoring.training.report import retrained_card
from leadscoring.training.rules import RuleScorer

log = logging.getLogger(__name__)


MIN_OUTCOMES = 20


#: Manifest entries that describe one fitted model, never carried over to a refit one:
#: identity, and figures measured on the old model (cross-validation, validation split).
NOT_INHERITED = {
    "file",
    "sha256",
    "created_at",
    "versions",
    "python_implementation",
    "data_fingerprint",
    "training_rows",
    "validation",
    "validation_rows",
    "cv",
    "metrics",
    "retrained_from",
    "retrained_at",
    "retrain",
    "retrain_holdout",
    "reasons",
    "grades",
    "group_validation_auc",
}


#: Differences within this of the tolerance count as equal (floating-point rounding).
EDGE = 1e-12


@dataclass
class RetrainResult:
    """What a retraining did: both models' figures on the held-out leads, the drift report and,
    after a challenger promotion, where the previous set was archived and what was refreshed."""

    promoted: bool  # challenger promotion: the challenger replaced the champion
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
        text = (
            f"{self.new_leads} new outcomes ({self.holdout_leads} held out): champion AUC "
            f"{self.champion['roc_auc']:.4f} / Brier {self.champion['brier']:.4f}, challenger AUC "
            f"{self.challenger['roc_auc']:.4f} / Brier {self.challenger['brier']:.4f} -> {verdict}; "
            f"drift watch/alert: {alerts or 'none'}"
        )
        if self.promoted:
            done = "; ".join(f"{k}: {v}" for k, v in self.refreshed.items())
            text += f"\n{done}\nprevious models archived in {self.archived} (leadscoring rollback restores them)"
        return text


def should_promote(champion: Mapping[str, float], challenger: Mapping[str, float], tolerance: float) -> bool:
    """The challenger promotion rule: True when the challenger is not worse than the champion
    beyond ``tolerance``: its ROC-AUC at most ``tolerance`` below the champion's AND its Brier
    score at most ``tolerance`` above.

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


def load_outcomes(
    cfg: ProjectConfig, outcomes: str | os.PathLike[str], leads: str | os.PathLike[str] | None = None
) -> pd.DataFrame:
    """New outcomes as full lead rows: either the outcomes file has every column, or it has
    only id + target and the features come from ``leads`` (raw layout)."""
    d = cfg.data
    name = Path(outcomes).name
    raw = read_raw(outcomes, cfg)  # the export's reader: one-line errors for empty, short rows, separator
    for col in (d.id_column, d.target_column):
        if col not in raw.columns:
            raise LeadDataError(f"{name}: missing required column '{col}'; found {list(raw.columns)}")
    if set(cfg.model_data.columns.all) <= set(raw.columns):
        return read_leads(outcomes, cfg)  # the same checks as the export (line numbers in messages)
    if leads is None:
        raise LeadDataError(f"{name}: has only id and outcome; pass the leads' features with --leads")
    feats = read_leads(leads, cfg, require_target=False)
    ids = raw[[d.id_column, d.target_column]]
    unknown = sorted(set(ids[d.id_column].str.strip()) - set(feats[d.id_column]))
    if unknown:
        raise LeadDataError(f"{name}: {len(unknown)} id(s) not found in {Path(leads).name}, e.g. {unknown[:5]}")
    # Each merged row keeps its outcome's record number as index, so messages (a duplicate
    # id, a bad outcome) name the lines of the outcomes file, header being line 1.
    record = "__outcome_record__"
    outcome_rows = ids.assign(**{d.id_column: ids[d.id_column].str.strip(), record: ids.index})
    merged = feats.merge(outcome_rows, on=d.id_column).set_index(record).rename_axis(None)
    return validate_leads(merged, cfg, origin=name, rows=row_locator(outcomes, cfg))


def outcomes_from_history(
    cfg: ProjectConfig, leads: str | os.PathLike[str] | None = None, history: str | os.PathLike[str] | None = None
) -> pd.DataFrame:
    """New outcomes from the outcome history (``paths.outcome_history``, written by
    ``leadscoring pull``) as full lead rows: each lead's latest state, converted -> the
    configured positive value, lost -> the negative one, open leads skipped; the features are
    the inputs the lead was scored with (:func:`leadscoring.loop.inputs.scored_inputs`, the
    scoring chosen by ``loop.train_on_inputs``), never its fields of today. Leads never
    scored, or scored only after their outcome, are skipped (logged). Leads scored before
    inputs were recorded take their features from ``leads`` (raw layout, joined by id; a
    warning says how many, as their fields may have changed since) or, without it, are
    skipped with a warning."""
    d = cfg.data
    path = Path(history) if history is not None else cfg.path("outcome_history")
    if not path.is_file():
        raise LeadDataError(f"{path}: no outcome history yet; run `leadscoring pull` first, or pass --outcomes")
    latest = latest_outcomes(path)
    found = scored_inputs(cfg, latest, cfg.loop.train_on_inputs)
    parts = []
    if len(found.rows):
        raw = found.rows.drop(columns=["model_version", "scored_at"])
        shown = raw[d.id_column].tolist()
        parts.append(
            validate_leads(raw, cfg, origin=f"{path.name} (inputs as scored)", rows=lambda recs: [f"lead {shown[r]}" for r in recs])
        )
    if found.without_inputs:
        parts.extend(_fallback_rows(cfg, found.without_inputs, latest, leads, path.name))
    closed = int(latest["outcome"].isin(FINAL).sum())
    if not parts:
        raise LeadDataError(
            f"{path.name}: none of its {closed} converted or lost lead(s) has inputs recorded at or before its outcome "
            f"({len(found.never_scored)} never scored, {len(found.scored_after_outcome)} scored only after, "
            f"{len(found.without_inputs)} scored before inputs were recorded: pass --leads for those)"
        )
    merged = pd.concat(parts, ignore_index=True)
    log.info(
        "%s: %d converted or lost lead(s) with their inputs as scored, %d from --leads (%d open skipped)",
        path.name,
        len(found.rows),
        len(merged) - len(found.rows),
        len(latest) - closed,
    )
    return merged


def _fallback_rows(
    cfg: ProjectConfig, ids: list[str], latest: pd.DataFrame, leads: str | os.PathLike[str] | None, origin: str
) -> list[pd.DataFrame]:
    """The leads ``ids`` (scored before inputs were recorded) with their features from the
    ``leads`` file, warned about; none without the file or for ids it lacks."""
    d = cfg.data
    if leads is None:
        log.warning(
            "%s: %d converted or lost lead(s) were scored before inputs were recorded; skipped "
            "(pass --leads to train on their fields as they are in that file), e.g. %s",
            origin,
            len(ids),
            ids[:5],
        )
        return []
    log.warning(
        "%s: %d converted or lost lead(s) were scored before inputs were recorded; their features come from %s "
        "(their fields as they are there, which may have changed since they were scored), e.g. %s",
        origin,
        len(ids),
        Path(leads).name,
        ids[:5],
    )
    feats = read_leads(leads, cfg, require_target=False).drop(columns=[d.target_column], errors="ignore")
    rows = latest[latest["lead_id"].astype(str).isin(ids)]
    wanted = pd.DataFrame(
        {
            d.id_column: rows["lead_id"].astype(str).to_numpy(),
            d.target_column: rows["outcome"].map({"converted": d.positive_value, "lost": d.negative_value}).to_numpy(),
        }
    )
    known = wanted[d.id_column].isin(feats[d.id_column].astype(str))
    if not known.all():
        missing = wanted.loc[~known, d.id_column].tolist()
        log.warning("%s: %d of them not in %s, skipped, e.g. %s", origin, len(missing), Path(leads).name, missing[:5])
    merged = feats.assign(**{d.id_column: feats[d.id_column].astype(str)}).merge(wanted[known], on=d.id_column)
    return [validate_leads(merged, cfg, origin=Path(leads).name)] if len(merged) else []


def _inherited(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe part of a manifest (kind, name, parameters, features…), for a refit model."""
    return {k: v for k, v in manifest.items() if k not in NOT_INHERITED}


def _rule_points_from_data(model: Any) -> bool:
    """Whether a rule scorer learns its points in ``fit`` (``RuleScorer(rules=None)``)."""
    est = model.steps[-1][1] if hasattr(model, "steps") else model
    return isinstance(est, RuleScorer) and est.rules is None


def retrain(
    cfg: ProjectConfig,
    outcomes: str | os.PathLike[str] | None = None,
    leads: str | os.PathLike[str] | None = None,
    tolerance: float = 0.005,
) -> RetrainResult:
    """Retrain on the new outcomes: the ``outcomes`` CSV (id + target with ``leads``, or full
    lead rows), or without it the outcome history pulled from the CRM
    (:func:`outcomes_from_history`: each lead's inputs as scored, from the score history;
    ``leads`` only for leads scored before inputs were recorded)."""
    d = cfg.data
    models = cfg.path("models_dir")
    champion, manifest = load_model(models / SCORE_MODEL)
    new = load_outcomes(cfg, outcomes, leads) if outcomes is not None else outcomes_from_history(cfg, leads)
    if len(new) < MIN_OUTCOMES or new[d.target_column].nunique() < 2:
        raise LeadDataError(f"need at least {MIN_OUTCOMES} new outcomes with both classes, got {len(new)}")
    history = load_history(cfg)
    new_train, holdout = train_test_split(new, test_size=0.5, stratify=new[d.target_column], random_state=cfg.split.seed)
    base = history[~history[d.id_column].isin(new[d.id_column])]
    train = pd.concat([base, new_train], ignore_index=True)
    X, y = train.drop(columns=[d.target_column]), train[d.target_column]
    challenger = all_cores(clone(champion).fit(X, y))
    Xh, yh = holdout.drop(columns=[d.target_column]), holdout[d.target_column]
    m_champ = classification_metrics(yh, champion.predict_proba(Xh)[:, 1])
    m_chall = classification_metrics(yh, challenger.predict_proba(Xh)[:, 1])
    promoted = should_promote(m_champ, m_chall, tolerance)
    X_new = new.drop(columns=[d.target_column])
    drift = drift_report(
        base,
        new,
        cfg.model_data.columns.numeric,
        d.columns.categorical,
        scores=(champion.predict_proba(base.drop(columns=[d.target_column]))[:, 1], champion.predict_proba(X_new)[:, 1]),
    )
    archived, refreshed = None, {}
    if promoted:
        archived, refreshed = _promote_challenger(cfg, challenger, manifest, X, y, train, m_champ, m_chall, len(new), tolerance)
    write_parquet(pd.concat([base, new], ignore_index=True), history_path(cfg))
    results = cfg.path("results_dir")
    write_csv(drift, results / "drift_report.csv")
    result = RetrainResult(promoted, m_champ, m_chall, drift, len(new), len(holdout), archived, refreshed)
    write_json(
        {
            "promoted": promoted,
            "tolerance": tolerance,
            "champion": m_champ,
            "challenger": m_chall,
            "archived": archived,
            "refreshed": refreshed,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        results / "retrain_report.json",
    )
    log.info(result.summary())
    update_tracking(cfg, event=_run_log_line(cfg, result, train, tolerance))
    return result


def _refit_segment_model(
    path: Path, X: pd.DataFrame, y: pd.Series, trained: dict[str, Any]
) -> tuple[tuple[Any, Path, dict[str, Any]], str]:
    """The segment model refit on the same leads, its manifest entries, and what was done."""
    segmenter, seg_manifest = load_model(path)
    new_seg = clone(segmenter).fit(X, y)
    note = "refit on the same leads"
    if hasattr(new_seg, "set_names") and getattr(segmenter, "names_", None):
        # Segments are numbered by conversion rate (1 = best), so the names carry over; the
        # profiles behind them are re-measured only by notebook 08.
        new_seg.set_names(segmenter.names_, getattr(segmenter, "advice_", None))
        note += "; segment names kept from the previous model (re-profile with notebook 08)"
    return (
        new_seg,
        path,
        {**_inherited(seg_manifest), **trained, "retrained_from": seg_manifest["sha256"], "retrain": {"note": note}},
    ), note


def _refit_rule_model(
    path: Path, X: pd.DataFrame, y: pd.Series, trained: dict[str, Any]
) -> tuple[tuple[Any, Path, dict[str, Any]] | None, str]:
    """The rule scorer refit when it learns its points from data (None when it is kept), and what was done."""
    rules, rule_manifest = load_model(path)
    if _rule_points_from_data(rules):
        note = "points re-proposed from the same leads (weights of evidence)"
        return (
            clone(rules).fit(X, y),
            path,
            {**_inherited(rule_manifest), **trained, "retrained_from": rule_manifest["sha256"], "retrain": {"note": note}},
        ), note
    # A fixed points table (marketing's CSV) is not learned from outcomes: refitting it
    # would only re-learn the cleaner's spellings and clipping, not the points. It is
    # kept as it is, and archived with the rest of the set.
    return None, "kept: fixed points table (marketing's rules), not learned from outcomes"


def _refit_dependents(
    models: Path, X: pd.DataFrame, y: pd.Series, trained: dict[str, Any]
) -> tuple[list[tuple[Any, Path, dict[str, Any]]], dict[str, str]]:
    """The models that depend on the data, refit (nothing written yet), and a note for each."""
    refreshed: dict[str, str] = {}
    to_save: list[tuple[Any, Path, dict[str, Any]]] = []
    seg_path = models / SEGMENT_MODEL
    if seg_path.is_file():
        entry, refreshed[SEGMENT_MODEL] = _refit_segment_model(seg_path, X, y, trained)
        to_save.append(entry)
    rule_path = models / RULE_MODEL
    if rule_path.is_file():
        rule_entry, refreshed[RULE_MODEL] = _refit_rule_model(rule_path, X, y, trained)
        if rule_entry is not None:
            to_save.append(rule_entry)
    return to_save, refreshed


def _save_challenger(
    cfg: ProjectConfig,
    challenger: Any,
    manifest: dict[str, Any],
    trained: dict[str, Any],
    m_champ: dict[str, float],
    m_chall: dict[str, float],
    new_outcomes: int,
    tolerance: float,
    archived: Path | None,
    refreshed: dict[str, str],
) -> dict[str, Any]:
    """Save the challenger as the scoring model with its own figures; returns its manifest."""
    holdout_metrics = {
        **m_chall,
        "rows": int(m_chall.get("n", 0)),
        "measured_on": (
            f"held-out new leads ({int(m_chall.get('n', 0))} of {new_outcomes} new outcomes, "
            "seen by neither model; not the validation split of notebook 01)"
        ),
    }
    return save_model(
        challenger,
        cfg.path("models_dir") / SCORE_MODEL,
        **_inherited(manifest),
        **trained,
        retrained_from=manifest["sha256"],
        metrics=holdout_metrics,
        retrain={
            "champion_on_holdout": m_champ,
            "tolerance": tolerance,
            "new_outcomes": new_outcomes,
            "archived": str(archived) if archived else None,
            "refreshed": refreshed,
        },
    )


def _promote_challenger(
    cfg: ProjectConfig,
    challenger: Any,
    manifest: dict[str, Any],
    X: pd.DataFrame,
    y: pd.Series,
    train: pd.DataFrame,
    m_champ: dict[str, float],
    m_chall: dict[str, float],
    new_outcomes: int,
    tolerance: float,
) -> tuple[Path | None, dict[str, str]]:
    """Challenger promotion: refit the data-dependent models, then replace the model set
    (the current set and card archived first) with the challenger, the refit models and a new card.

    Everything is fitted before anything is written, so a failing refit leaves the project
    as it was; each file is written atomically.
    """
    models, card = cfg.path("models_dir"), cfg.path("docs_dir") / MODEL_CARD
    now = datetime.now(UTC).isoformat(timespec="seconds")
    trained = {"data_fingerprint": fingerprint(train), "training_rows": len(train), "retrained_at": now}
    to_save, refreshed = _refit_dependents(models, X, y, trained)

    # Reasons' evidence and learned grade thresholds belong to the data: re-learned too.
    explained = {
        "reasons": reason_book_for(cfg, challenger, X, y).to_dict(),
        "group_validation_auc": {},
        "grades": grades_for(cfg, to_score(challenger.predict_proba(X)[:, 1]), train),
    }

    def put_in_place(archived: Path | None) -> None:
        for obj, path, info in to_save:
            save_model(obj, path, **info)
        info = _save_challenger(
            cfg, challenger, manifest, {**trained, **explained}, m_champ, m_chall, new_outcomes, tolerance, archived, refreshed
        )
        previous = card.read_text(encoding="utf-8") if card.is_file() else None
        write_text(retrained_card(info, cfg, previous), card)
        refreshed[MODEL_CARD] = "regenerated (states the retraining and this model's own figures)"

    archived, _ = replace_model_set(models, put_in_place, extra=[card])
    return archived, refreshed


def _run_log_line(cfg: ProjectConfig, result: RetrainResult, train: pd.DataFrame, tolerance: float) -> dict[str, Any]:
    """The retraining's line in the run log (and the tracking workbook's *Runs* sheet): the
    decision, both models' figures on the held-out leads, the challenger's training data and
    the scoring model in service afterwards."""
    verdict = "challenger promoted: not worse than the champion" if result.promoted else "champion kept: the challenger is worse"
    return {
        "event": RETRAIN_EVENT,
        "status": "ok",
        "promoted": result.promoted,
        "decision": f"{verdict} (ROC-AUC drop and Brier rise each at most {tolerance:g})",
        "tolerance": tolerance,
        "new_outcomes": result.new_leads,
        "holdout_leads": result.holdout_leads,
        "champion": result.champion,
        "challenger": result.challenger,
        "data_fingerprint": fingerprint(train),
        "training_rows": len(train),
        "model_sha256": read_manifest(cfg.path("models_dir") / SCORE_MODEL).get("sha256"),
        "archived": str(result.archived) if result.archived else None,
    }
