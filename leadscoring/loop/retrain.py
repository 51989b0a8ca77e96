"""The feedback loop: merge newly known outcomes, retrain, champion vs challenger, drift.

Outcomes pulled from the CRM train on the inputs each lead was scored with (the score
history, :mod:`leadscoring.loop.inputs`), never on its fields of today.

The challenger — the champion's exact recipe, refit on the history plus the new outcomes
but the held-out ones — and the champion are compared on held-out leads neither has seen:
the newest matured cohort (:mod:`leadscoring.loop.maturity`), i.e. for each outcome
(converted, not converted) the newest ``loop.holdout_share`` of the leads whose outcome matured
since the champion was trained, by the time they matured (:func:`split_holdout`); without
outcome times (an outcomes CSV without ``data.date_column``) a stratified,
seeded share of the new outcomes. The challenger replaces the champion (challenger promotion)
by the rule of :func:`decide`: its ROC-AUC at least the champion's minus ``tolerance`` and its
Brier score at most the champion's plus ``tolerance``, or the champion older than
``loop.max_age_days``. The decision and its reason are in the result (and the nightly cycle's
run log).

On challenger promotion the current model set (all models, manifests and the model card) is
archived under ``04_Modelos/versions/`` first (:func:`leadscoring.artifacts.replace_model_set`);
then the challenger is saved with its own measured figures (never the champion's), the
models that depend on the data are refit on the same leads (the segment model; the rule
scorer when its points are learned from data), and the model card is regenerated.
``rollback`` (:mod:`leadscoring.loop.versions`) restores an archived set as a whole.

Nothing is written until both models are measured; the writes (promotion, history, reports)
run inside the caller's ``writing`` guard (the nightly cycle defers SIGTERM there, so a
promotion is never left half-done).

"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
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
from leadscoring.errors import LeadDataError
from leadscoring.ingest.load import read_leads
from leadscoring.ingest.reader import read_raw, row_locator
from leadscoring.ingest.schema import LeadSchema, validate_leads
from leadscoring.ingest.split import fingerprint, in_ids_digest, training_ids
from leadscoring.ingest.values import parse_dates
from leadscoring.io import write_csv, write_json, write_parquet, write_text
from leadscoring.loop.inputs import FINAL, scored_inputs
from leadscoring.loop.maturity import matured_outcomes, trained_at
from leadscoring.loop.monitoring import drift_report
from leadscoring.serving.scorer import to_score
from leadscoring.tracking import RETRAIN_EVENT, record_event, update_tracking
from leadscoring.training.compare import cv_splitter
from leadscoring.training.evaluation import auc_difference, classification_metrics
from leadscoring.training.explanations import reason_book_for
from leadscoring.training.grades import grades_for, new_lead_probabilities
from leadscoring.training.pipeline import all_cores
from leadscoring.training.report import retrained_card
from leadscoring.training.rules import RuleScorer

log = logging.getLogger(__name__)


#: A retraining needs at least this many new outcomes it can train on, of both classes.
MIN_OUTCOMES = 20


class NotEnoughOutcomes(LeadDataError):
    """The new outcomes hold too few leads a retraining can learn from (too few, one class,
    or none with the inputs it was scored with): a state of the data, not a failure."""


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
    "training_ids",
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
    reason: str = ""  # the decision and why (:func:`decide`)
    holdout: str = ""  # which leads were held out

    def summary(self) -> str:
        alerts = self.drift[self.drift["level"] != "stable"]["variable"].tolist()
        text = (
            f"{self.new_leads} new outcomes ({self.holdout_leads} held out: {self.holdout}): champion AUC "
            f"{self.champion['roc_auc']:.4f} / Brier {self.champion['brier']:.4f}, challenger AUC "
            f"{self.challenger['roc_auc']:.4f} / Brier {self.challenger['brier']:.4f} -> {self.reason}; "
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


def decide(
    champion: Mapping[str, float],
    challenger: Mapping[str, float],
    tolerance: float,
    champion_age_days: float | None = None,
    max_age_days: float | None = None,
    auc_gap: tuple[float, float] | None = None,
) -> tuple[bool, str]:
    """The promotion rule and its reason in one line: promote when :func:`should_promote`
    (ROC-AUC at least the champion's minus ``tolerance``, Brier at most the champion's plus
    ``tolerance``), or when the champion is older than ``max_age_days`` unless the challenger
    ranks the held-out leads worse beyond doubt: ``auc_gap`` (the champion's ROC-AUC minus the
    challenger's on the held-out leads, and its DeLong standard error) more than ``tolerance``
    even at the low end of its 95 % interval. Else keep the champion."""

    def fig(m: Mapping[str, float], key: str) -> str:
        v = m.get(key, float("nan"))
        return "n/a" if v is None or v != v else f"{float(v):.4f}"

    auc = f"AUC {fig(challenger, 'roc_auc')} vs {fig(champion, 'roc_auc')}"
    brier = f"Brier {fig(challenger, 'brier')} vs {fig(champion, 'brier')}"
    measured = f"challenger {auc}, {brier} (tolerance {tolerance:g})"
    if should_promote(champion, challenger, tolerance):
        return True, f"challenger promoted: not worse than the champion: {measured}"
    old = champion_age_days is not None and max_age_days is not None and champion_age_days > max_age_days
    gap, se = auc_gap if auc_gap is not None else (float("nan"), float("nan"))
    if old and gap - 1.96 * se > tolerance + EDGE:  # NaN compares False: no evidence, no veto
        return False, (
            f"champion kept although {champion_age_days:.0f} days old (max_age_days {max_age_days:g}): the challenger "
            f"ranks the held-out leads worse beyond doubt (ROC-AUC {gap:+.4f} in the champion's favour, 95 % interval "
            f"{gap - 1.96 * se:+.4f} to {gap + 1.96 * se:+.4f}): {measured}"
        )
    if old:
        return True, (
            f"challenger promoted: the champion is {champion_age_days:.0f} days old (max_age_days {max_age_days:g}), "
            f"although {measured}"
        )
    return False, f"champion kept: the challenger falls short of the rule: {measured}"


def split_holdout(
    new: pd.DataFrame, target: str, share: float, seed: int, times: pd.Series | None = None, since: datetime | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(rows to train on, held-out rows, which were held out). With ``times`` (when each row's
    outcome matured, aligned with ``new``): the newest matured cohort, i.e. for each outcome
    the newest ``share`` of its rows matured after ``since`` (at least one, and one left to
    train on), by (time, row order), so both outcomes are measured whatever order the sales
    team closed the leads in; an outcome with no row after ``since`` lends its newest row from
    before. Without times: a stratified ``share`` drawn with ``seed``."""
    if times is None or times.isna().all():
        train, holdout = train_test_split(new, test_size=share, stratify=new[target], random_state=seed)
        return train, holdout, f"a stratified random {share:g} (no outcome times)"
    when = pd.to_datetime(times, utc=True)
    recent = when > pd.Timestamp(since) if since is not None else pd.Series(True, index=new.index)
    held: list[Any] = []
    counts = []
    for value in sorted(new[target].unique(), key=str):
        of_value = new[target] == value
        order = when[of_value & recent].sort_values(kind="stable").index
        if len(order) == 0:  # none matured since: its newest one from before
            order = when[of_value].sort_values(kind="stable").index[-1:]
            n = 1
        else:
            n = max(1, math.ceil(share * len(order)))
            n = min(n, len(order) - 1) if len(order) > 1 else n
        held.extend(order[len(order) - n :])
        counts.append(f"{n} of {len(order)} '{value}'")
    after = f" matured since {pd.Timestamp(since).isoformat(timespec='seconds')}" if since is not None else ""
    what = f"the newest {', '.join(counts)} leads{after}, from {when[held].min().isoformat(timespec='seconds')}"
    return new.drop(index=held), new.loc[held], what


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
    lead_ids = LeadSchema(cfg).column_ids(raw, name, row_locator(outcomes, cfg))  # text or typed (parquet) ids alike
    unknown = sorted(set(lead_ids) - set(feats[d.id_column]))
    if unknown:
        raise LeadDataError(f"{name}: {len(unknown)} id(s) not found in {Path(leads).name}, e.g. {unknown[:5]}")
    # Each merged row keeps its outcome's record number as index, so messages (a duplicate
    # id, a bad outcome) name the lines of the outcomes file, header being line 1.
    record = "__outcome_record__"
    outcome_rows = ids.assign(**{d.id_column: lead_ids, record: ids.index})
    merged = feats.merge(outcome_rows, on=d.id_column).set_index(record).rename_axis(None)
    return validate_leads(merged, cfg, origin=name, rows=row_locator(outcomes, cfg))


def outcomes_from_history(
    cfg: ProjectConfig,
    leads: str | os.PathLike[str] | None = None,
    history: str | os.PathLike[str] | None = None,
    *,
    matured: pd.DataFrame | None = None,
    now: datetime | None = None,
) -> pd.DataFrame:
    """New outcomes from the outcome history (``paths.outcome_history``, written by
    ``leadscoring pull``) as full lead rows: each lead's matured outcome
    (:func:`~leadscoring.loop.maturity.matured_outcomes` as of ``now``, or ``matured`` when
    given), converted -> the configured positive value, lost -> the negative one, leads still
    maturing skipped; the features are the inputs the lead was scored with
    (:func:`leadscoring.loop.inputs.scored_inputs`, the scoring chosen by
    ``loop.train_on_inputs``), never its fields of today. Leads never scored, or scored only
    after their outcome, are skipped (logged). Leads scored before inputs were recorded take
    their features from ``leads`` (raw layout, joined by id; a warning says how many, as their
    fields may have changed since) or, without it, are skipped with a warning."""
    d = cfg.data
    path = Path(history) if history is not None else cfg.path("outcome_history")
    if not path.is_file():
        raise LeadDataError(f"{path}: no outcome history yet; run `leadscoring pull` first, or pass --outcomes")
    if matured is None:
        from leadscoring.crm.outcomes import read_outcome_history

        matured = matured_outcomes(cfg, now or datetime.now(UTC), read_outcome_history(path))
    latest = matured
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
        raise NotEnoughOutcomes(
            f"{path.name}: none of its {closed} converted or lost lead(s) has inputs recorded at or before its outcome "
            f"({len(found.never_scored)} never scored, {len(found.scored_after_outcome)} scored only after, "
            f"{len(found.without_inputs)} scored before inputs were recorded: pass --leads for those)"
        )
    merged = pd.concat(parts, ignore_index=True)
    log.info(
        "%s: %d matured lead(s) with their inputs as scored, %d from --leads",
        path.name,
        len(found.rows),
        len(merged) - len(found.rows),
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


def champion_trained_on(cfg: ProjectConfig, manifest: Mapping[str, Any], ids: pd.Series) -> np.ndarray:
    """Which of ``ids`` the model of ``manifest`` trained on (its ``training_ids`` digest;
    none for a model saved without it, or ids that are row numbers, which name other leads
    in another file)."""
    digest = manifest.get("training_ids")
    if not digest or cfg.data.id_from_row_number:
        if not cfg.data.id_from_row_number:
            log.warning(
                "the scoring model's manifest does not record the leads it trained on (saved before training_ids): "
                "new outcomes of those leads cannot be told apart and would measure it on its own leads; "
                "a production run (leadscoring run) records them"
            )
        return np.zeros(len(ids), dtype=bool)
    return in_ids_digest(digest, ids.astype(str))


def _outcome_times(cfg: ProjectConfig, new: pd.DataFrame, matured: pd.DataFrame | None) -> pd.Series | None:
    """When each new outcome matured (aligned with ``new``): from the matured outcomes of the
    outcome history, else the leads' creation date (``data.date_column``), else None."""
    d = cfg.data
    if matured is not None:
        at = matured.assign(lead_id=matured["lead_id"].astype(str)).set_index("lead_id")["matured_at"]
        return new[d.id_column].astype(str).map(at)
    if d.date_column and d.date_column in new.columns:
        return pd.to_datetime(parse_dates(new[d.date_column], d.date_format), utc=True)
    return None


def retrain(
    cfg: ProjectConfig,
    outcomes: str | os.PathLike[str] | None = None,
    leads: str | os.PathLike[str] | None = None,
    tolerance: float | None = None,
    *,
    now: datetime | None = None,
    writing: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    matured: pd.DataFrame | None = None,
    rewrite_tracking: bool = True,
) -> RetrainResult:
    """Retrain on the new outcomes: the ``outcomes`` CSV (id + target with ``leads``, or full
    lead rows), or without it the matured outcomes of the outcome history pulled from the CRM
    (:func:`outcomes_from_history`: each lead's inputs as scored, from the score history;
    ``leads`` only for leads scored before inputs were recorded), as of ``now``. ``tolerance``
    defaults to ``loop.tolerance``; ``writing`` guards the writes (see the module); ``matured``:
    the matured outcomes as of ``now`` when the caller has them already (the cycle). The
    decision goes to the run log; ``rewrite_tracking=False`` leaves the tracking workbook to a
    caller that rewrites it once at its end (the cycle)."""
    d, loop = cfg.data, cfg.loop
    tolerance = loop.tolerance if tolerance is None else tolerance
    now = now or datetime.now(UTC)
    models = cfg.path("models_dir")
    champion, manifest = load_model(models / SCORE_MODEL)
    if outcomes is not None:
        matured = None
        new = load_outcomes(cfg, outcomes, leads)
    else:
        if matured is None:
            from leadscoring.crm.outcomes import read_outcome_history

            matured = matured_outcomes(cfg, now, read_outcome_history(cfg.path("outcome_history")))
        new = outcomes_from_history(cfg, leads, matured=matured)
    if len(new) < MIN_OUTCOMES or new[d.target_column].nunique() < 2:
        got = f"{len(new)}" + ("" if len(new) == 0 or new[d.target_column].nunique() > 1 else ", all of one class")
        raise NotEnoughOutcomes(f"need at least {MIN_OUTCOMES} new outcomes with both classes to train on, got {got}")
    history = load_history(cfg)
    trained = trained_at(manifest)
    own = champion_trained_on(cfg, manifest, new[d.id_column])
    fresh = new[~own]
    if len(fresh) < MIN_OUTCOMES or fresh[d.target_column].nunique() < 2:
        got = f"{len(fresh)}" + (", all of one class" if len(fresh) >= MIN_OUTCOMES else "")
        raise NotEnoughOutcomes(
            f"{int(own.sum())} of the {len(new)} new outcomes are of leads the scoring model trained on, which "
            f"cannot measure it; need at least {MIN_OUTCOMES} others with both classes, got {got}"
        )
    new_train, holdout, held_out = split_holdout(
        fresh, d.target_column, loop.holdout_share, cfg.split.seed, _outcome_times(cfg, fresh, matured), trained.to_pydatetime()
    )
    if own.any():  # they train the challenger, with their outcomes as they are now; never held out
        log.warning(
            "%d of the %d new outcomes are of leads the scoring model trained on: trained on, not held out", own.sum(), len(new)
        )
        new_train = pd.concat([new[own], new_train])
        held_out += f"; {int(own.sum())} lead(s) the champion trained on left out of it"
    base = history[~history[d.id_column].isin(new[d.id_column])]
    train = pd.concat([base, new_train], ignore_index=True)
    X, y = train.drop(columns=[d.target_column]), train[d.target_column]
    challenger = all_cores(clone(champion).fit(X, y))
    Xh, yh = holdout.drop(columns=[d.target_column]), holdout[d.target_column]
    p_champ, p_chall = champion.predict_proba(Xh)[:, 1], challenger.predict_proba(Xh)[:, 1]
    m_champ, m_chall = classification_metrics(yh, p_champ), classification_metrics(yh, p_chall)
    age = (pd.Timestamp(now).tz_convert("UTC") - trained).total_seconds() / 86400
    promoted, reason = decide(m_champ, m_chall, tolerance, age, loop.max_age_days, auc_difference(yh, p_champ, p_chall))
    X_new = new.drop(columns=[d.target_column])
    drift = drift_report(
        base,
        new,
        cfg.model_data.columns.numeric,
        d.columns.categorical,
        scores=(champion.predict_proba(base.drop(columns=[d.target_column]))[:, 1], champion.predict_proba(X_new)[:, 1]),
    )
    archived, refreshed = None, {}
    with writing():
        if promoted:
            archived, refreshed = _promote_challenger(
                cfg, challenger, manifest, X, y, train, m_champ, m_chall, len(new), tolerance, reason
            )
        write_parquet(pd.concat([base, new], ignore_index=True), history_path(cfg))
        results = cfg.path("results_dir")
        write_csv(drift, results / "drift_report.csv")
        result = RetrainResult(
            promoted, m_champ, m_chall, drift, len(new), len(holdout), archived, refreshed, reason=reason, holdout=held_out
        )
        write_json(
            {
                "promoted": promoted,
                "reason": reason,
                "tolerance": tolerance,
                "champion_age_days": round(age, 2),
                "max_age_days": loop.max_age_days,
                "holdout": held_out,
                "champion": m_champ,
                "challenger": m_chall,
                "archived": archived,
                "refreshed": refreshed,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
            results / "retrain_report.json",
        )
        record_event(cfg, _run_log_line(cfg, result, train, tolerance))  # the decision in the run log, with the rest
        if rewrite_tracking:
            update_tracking(cfg)
    log.info(result.summary())
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
    reason: str = "",
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
            "reason": reason,
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
    reason: str = "",
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
    own_ids = {"training_ids": training_ids(cfg, train)}  # the scoring model's: the next retraining holds them out

    # Reasons' evidence and learned grade thresholds belong to the data: re-learned too.
    explained = {
        "reasons": reason_book_for(cfg, challenger, X, y).to_dict(),
        "group_validation_auc": {},
        "grades": grades_for(cfg, to_score(new_lead_probabilities(challenger, X, y, cv_splitter(cfg))), train),
    }

    # The previous card's caveats are carried over: read before anything is written, whatever
    # an editor did to its encoding.
    previous = _read_card(card)

    def put_in_place(archived: Path | None) -> None:
        for obj, path, info in to_save:
            save_model(obj, path, **info)
        info = _save_challenger(
            cfg,
            challenger,
            manifest,
            {**trained, **own_ids, **explained},
            m_champ,
            m_chall,
            new_outcomes,
            tolerance,
            archived,
            refreshed,
            reason,
        )
        write_text(retrained_card(info, cfg, previous), card)
        refreshed[MODEL_CARD] = "regenerated (states the retraining and this model's own figures)"

    archived, _ = replace_model_set(models, put_in_place, extra=[card])
    return archived, refreshed


def _read_card(card: Path) -> str | None:
    """The model card's text: UTF-8 as written, else as a Windows editor saved it (cp1252,
    with a warning); None without a card."""
    if not card.is_file():
        return None
    data = card.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        log.warning("%s is not UTF-8 (saved by an editor?): read as Windows-1252", card)
        return data.decode("cp1252", errors="replace")


def _run_log_line(cfg: ProjectConfig, result: RetrainResult, train: pd.DataFrame, tolerance: float) -> dict[str, Any]:
    """The retraining's line in the run log (and the tracking workbook's *Runs* sheet): the
    decision, both models' figures on the held-out leads, the challenger's training data and
    the scoring model in service afterwards."""
    return {
        "event": RETRAIN_EVENT,
        "status": "ok",
        "promoted": result.promoted,
        "decision": result.reason,
        "holdout": result.holdout,
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
