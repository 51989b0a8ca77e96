"""When an outcome counts, and when a retraining is due.

**Matured outcomes.** A lead's outcome counts (is *matured*) once it is final — its latest
state in the outcome history is converted or lost — or once the lead has been open for
``monitoring.maturity_days`` since it was first seen: it then counts as not converted (lost),
as the monitoring report counts it (one setting for both).
A lead is first seen at its first scoring (the score history), as the monitoring report
counts a scored lead's age; a lead never scored, at its first row in the outcome history.
Each matured outcome has a time, ``matured_at``: the CRM's outcome time, else the
modification time of the lead's latest row; for an open lead, the day it matured (first seen
+ ``maturity_days``). Sorted by that time, the newest matured leads
are the cohort a challenger and its champion are measured on
(:func:`leadscoring.loop.retrain.retrain`).

**Due.** A retraining is due when at least ``loop.min_new_converted`` converted and
``loop.min_new_lost`` lost leads matured since the last training — the later of the model's
training time (its manifest's ``retrained_at``, else ``created_at``) and the last retraining
attempt (a challenger measured and kept, or too few of the new outcomes to learn from) — or
when the model is older than ``loop.max_age_days``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from leadscoring.config import ProjectConfig
from leadscoring.crm.outcomes import latest_rows, read_outcome_history

log = logging.getLogger(__name__)


def utc_stamp(when: Any) -> pd.Timestamp:
    """``when`` (a time, its text, a timestamp) as a UTC pandas timestamp (naive = UTC)."""
    stamp = pd.Timestamp(when)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def trained_at(manifest: dict[str, Any]) -> pd.Timestamp:
    """When a model was trained: its manifest's ``retrained_at`` (a retraining), else its ``created_at``."""
    return utc_stamp(manifest.get("retrained_at") or manifest["created_at"])


def first_seen(cfg: ProjectConfig, history: pd.DataFrame) -> pd.Series:
    """Lead id -> when the lead was first seen (UTC): its first scoring in the score history;
    for a lead never scored, its first row in ``history`` (the outcome history). A scored lead
    ages from its first scoring, as in the monitoring report, even when the CRM reported it
    open before."""
    from leadscoring.serving.history import read_history

    scored = read_history(cfg.path("score_history"), columns=("lead_id", "scored_at"))
    parts = []
    if scored.num_rows:
        first = scored.group_by("lead_id").aggregate([("scored_at", "min")]).to_pandas()
        parts.append(pd.Series(first["scored_at_min"].to_numpy(), index=first["lead_id"].astype(str)))
    if len(history):
        parts.append(history.groupby("lead_id", sort=False)["modified_at"].min())
    if not parts:
        return pd.Series([], dtype="datetime64[us, UTC]", index=pd.Index([], dtype=str, name="lead_id"))
    both = pd.concat([p.astype("datetime64[us, UTC]") for p in parts])  # the first scoring first: it wins
    return both[~both.index.duplicated(keep="first")].rename_axis("lead_id")


def matured_outcomes(cfg: ProjectConfig, now: datetime, history: pd.DataFrame | None = None) -> pd.DataFrame:
    """The matured outcomes (see the module) as of ``now``: one row per lead with the columns of
    the outcome history (``outcome`` converted or lost: an open lead that matured is lost, its
    ``outcome_at`` the day it matured), ``matured_at`` and ``aged`` (True: open, counted as not
    converted); sorted by
    (``matured_at``, ``lead_id``). ``history``: the outcome history's rows (default: read from
    ``paths.outcome_history``)."""
    if history is None:
        history = read_outcome_history(cfg.path("outcome_history"))
    latest = latest_rows(history)
    closed = latest[latest["outcome"] != "open"].copy()
    closed["matured_at"] = closed["outcome_at"].fillna(closed["modified_at"])
    closed["aged"] = False
    frames = [closed]
    days = cfg.monitoring.maturity_days
    if days is not None:
        still_open = latest[latest["outcome"] == "open"]
        if len(still_open):
            seen = first_seen(cfg, history).reindex(still_open["lead_id"].astype(str)).to_numpy()
            at = pd.Series(seen, index=still_open.index).astype("datetime64[us, UTC]") + timedelta(days=days)
            ripe = at <= utc_stamp(now)
            aged = still_open[ripe.to_numpy()].copy()
            aged["outcome"] = "lost"
            aged["matured_at"] = aged["outcome_at"] = at[ripe]  # not converted from then on
            aged["aged"] = True
            frames.append(aged)
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else closed
    out["matured_at"] = out["matured_at"].astype("datetime64[us, UTC]")
    return out.sort_values(["matured_at", "lead_id"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Due:
    """Whether a retraining is due, why (one line), and the figures behind it."""

    due: bool
    reason: str
    since: pd.Timestamp
    new_converted: int
    new_lost: int
    model_age_days: float

    def figures(self) -> dict[str, Any]:
        return {
            "due": self.due,
            "why": self.reason,
            "since": self.since.isoformat(),
            "new_converted": self.new_converted,
            "new_lost": self.new_lost,
            "model_age_days": round(self.model_age_days, 2),
        }


def retrain_due(
    cfg: ProjectConfig, manifest: dict[str, Any], matured: pd.DataFrame, now: datetime, last_attempt: datetime | None = None
) -> Due:
    """Whether a retraining is due (see the module) for the model of ``manifest``, given the
    ``matured`` outcomes (:func:`matured_outcomes`) and the last retraining attempt."""
    loop = cfg.loop
    trained = trained_at(manifest)
    since = max(trained, utc_stamp(last_attempt)) if last_attempt is not None else trained
    new = matured[matured["matured_at"] > since]
    converted, lost = int((new["outcome"] == "converted").sum()), int((new["outcome"] == "lost").sum())
    age = (utc_stamp(now) - trained).total_seconds() / 86400
    counts = f"{converted} converted and {lost} lost lead(s) matured since {since.isoformat(timespec='seconds')}"
    if age > loop.max_age_days:
        why = f"the model is {age:.0f} days old (loop.max_age_days {loop.max_age_days:g}); {counts}"
        return Due(True, why, since, converted, lost, age)
    if converted >= loop.min_new_converted and lost >= loop.min_new_lost:
        need = f"at least {loop.min_new_converted} and {loop.min_new_lost}"
        return Due(True, f"{counts} ({need} needed)", since, converted, lost, age)
    need = f"{loop.min_new_converted} converted and {loop.min_new_lost} lost needed"
    return Due(False, f"not due: {counts} ({need}); the model is {age:.0f} days old", since, converted, lost, age)
