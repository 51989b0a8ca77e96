"""The training rows of the feedback loop: each lead whose outcome came back, with the input it
was scored with (the score history's ``inputs``, :mod:`leadscoring.serving.inputs`), never
its fields of today in the CRM or in an export (a status tag filled in after the call would
leak the outcome into the training data).

For each lead with a final outcome (converted or lost) in the outcome history, the scoring
that trains is the first, or the last, of its scorings with recorded inputs at or before its
outcome time (``outcome_at``, else the change's ``modified_at``; ``loop.train_on_inputs``);
a scoring after the outcome is never used (its inputs may already show the outcome). The
leads that give no row are counted by why (:class:`ScoredInputs`): never scored, scored only
after the outcome, or scored only before inputs were recorded (``retrain --leads`` can still
give those their fields, with a warning).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from leadscoring.config import ProjectConfig
from leadscoring.crm.outcomes import latest_rows
from leadscoring.serving.history import inputs_at, locate_scorings, relisted
from leadscoring.serving.inputs import INPUTS_COLUMN, decode_inputs, input_columns

log = logging.getLogger(__name__)

Which = Literal["first", "last_before_outcome"]

#: The final outcomes and the target value each becomes.
FINAL = ("converted", "lost")


@dataclass(frozen=True)
class ScoredInputs:
    """What :func:`scored_inputs` found: the training ``rows`` (see :func:`inputs_as_scored`),
    and the ids of the leads with a final outcome that give none, by why."""

    rows: pd.DataFrame
    never_scored: list[str] = field(default_factory=list)
    scored_after_outcome: list[str] = field(default_factory=list)
    without_inputs: list[str] = field(default_factory=list)  # scored before inputs were recorded

    @property
    def skipped(self) -> int:
        return len(self.never_scored) + len(self.scored_after_outcome) + len(self.without_inputs)


def scored_inputs(cfg: ProjectConfig, outcomes: pd.DataFrame, which: Which = "last_before_outcome") -> ScoredInputs:
    """:func:`inputs_as_scored`, with the leads it skips by why (logged, with counts)."""
    if which not in ("first", "last_before_outcome"):
        raise ValueError(f"which: 'first' or 'last_before_outcome', got {which!r}")
    d = cfg.data
    latest = latest_rows(outcomes)
    final = latest[latest["outcome"].isin(FINAL)]
    ids = final["lead_id"].astype(str).to_numpy(dtype=object)
    due = final["outcome_at"].fillna(final["modified_at"])  # the outcome's time, else the change's
    cutoff = pd.Series(due.to_numpy(dtype="datetime64[ns]"), index=pd.Index(ids, name="lead_id"))
    target = pd.Series(np.where(final["outcome"].to_numpy() == "converted", d.positive_value, d.negative_value), index=cutoff.index)
    chosen, in_time, scored = relisted(lambda: _chosen(cfg, ids, cutoff, which))  # a compaction between its two reads
    picked = set(chosen.index)
    found = ScoredInputs(
        _rows(cfg, chosen.loc[[i for i in ids if i in picked]], target),
        never_scored=[i for i in ids if i not in scored],
        scored_after_outcome=[i for i in ids if i in scored and i not in in_time],
        without_inputs=[i for i in ids if i in in_time and i not in picked],
    )
    log.info(
        "inputs as scored (%s): %d of %d converted or lost lead(s); skipped: %d never scored, %d scored only after "
        "the outcome, %d scored before inputs were recorded",
        which,
        len(found.rows),
        len(ids),
        len(found.never_scored),
        len(found.scored_after_outcome),
        len(found.without_inputs),
    )
    return found


def _chosen(cfg: ProjectConfig, ids: np.ndarray, cutoff: pd.Series, which: Which) -> tuple[pd.DataFrame, set[str], set[str]]:
    """The scoring that trains for each lead of ``ids`` (index: lead id; ``model_version``,
    ``scored_at``, ``inputs``), the leads scored at or before their cutoff, and those scored
    at all. The scorings are located first (lead, version, time only); then only the row
    groups of the picked ones are read for their inputs, and a pick that turns out to have
    none (a part written before inputs were kept) gives way to the lead's next candidate."""
    located = locate_scorings(cfg.path("score_history"), ids.tolist())
    rows = located.rows.assign(order=np.arange(len(located.rows)))  # append order breaks ties of time
    at = rows["scored_at"].to_numpy(dtype="datetime64[ns]")
    in_time = rows[at <= cutoff.reindex(rows["lead_id"]).to_numpy()]
    candidates = in_time[in_time["inputs"]].sort_values(["scored_at", "order"], kind="stable")
    keep = "first" if which == "first" else "last"
    found = []
    while len(candidates):
        picks = candidates.drop_duplicates("lead_id", keep=keep)
        texts = pd.Series(inputs_at(located, picks), index=picks.index, dtype=object)
        found.append(picks.assign(**{INPUTS_COLUMN: texts})[texts.notna()])
        done = set(picks["lead_id"][texts.notna()])
        candidates = candidates.drop(picks.index)
        candidates = candidates[~candidates["lead_id"].isin(done)]
    chosen = pd.concat(found) if found else rows.head(0).assign(**{INPUTS_COLUMN: pd.Series(dtype=object)})
    return chosen.set_index("lead_id"), set(in_time["lead_id"]), set(rows["lead_id"])


def _rows(cfg: ProjectConfig, chosen: pd.DataFrame, target: pd.Series) -> pd.DataFrame:
    """The chosen scorings (index: lead id) as raw lead rows: the id, the recorded input
    columns still configured (every configured column there, null where not recorded; a
    behavioural feature only when some lead was sent with it), the target, the model version
    and the scoring time."""
    d = cfg.data
    records = pd.DataFrame.from_records(decode_inputs(chosen[INPUTS_COLUMN]), index=chosen.index)
    events = set(cfg.event_columns)
    columns = [c for c in input_columns(cfg) if c in records.columns or c not in events]
    frame = records.reindex(columns=columns).astype(object).where(records.reindex(columns=columns).notna(), None)
    frame.insert(0, d.id_column, chosen.index.to_numpy(dtype=object))
    frame[d.target_column] = target.reindex(chosen.index).to_numpy(dtype=object)
    frame["model_version"] = chosen["model_version"].to_numpy(dtype=object)
    frame["scored_at"] = chosen["scored_at"].to_numpy()
    return frame.reset_index(drop=True)


def inputs_as_scored(cfg: ProjectConfig, outcomes: pd.DataFrame, which: Which = "last_before_outcome") -> pd.DataFrame:
    """For each lead with a final outcome (converted or lost) in ``outcomes`` (the outcome
    history, :func:`leadscoring.crm.outcomes.read_outcome_history`, or its latest rows: the
    latest row of each lead counts), the raw input row it was scored with, from the score
    history: its first scoring, or its last scoring at or before its outcome time
    (``outcome_at`` if set, else ``modified_at``), among those with recorded inputs and at or
    before that time. Columns: the id column, the configured input columns as recorded (text
    as text; a column not recorded is null), the target column set from the outcome (the
    configured positive / negative value), ``model_version`` and ``scored_at`` (UTC). Leads
    never scored (and those scored only after their outcome, or only before inputs were
    recorded) are skipped, counted in the log; :func:`scored_inputs` names them."""
    return scored_inputs(cfg, outcomes, which).rows
