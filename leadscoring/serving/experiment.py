"""The A/B test's groups (``experiment:`` section): which leads are held out of the scoring.

A lead's group comes from its id and the experiment's salt alone: the first 8 bytes of
SHA-256 of ``salt``, a unit separator and the id (as text) make a number ``u`` uniform in
[0, 1); the lead is ``control`` when ``u < control_share``, else ``treatment``
(:func:`experiment_groups`). Every path (the ``score`` command, notebook 10, the dask engine,
the service) scores through :meth:`~leadscoring.serving.scorer.Scorer.score_columns`, which
adds the group, so a lead gets the same group on every path and in every run, and the score
history records it (``experiment_group``, declared in :mod:`leadscoring.scored_lead`).

A lead keeps its group for life as long as the salt and the share stay the same. Changing
either would move some leads already scored to the other group (a control lead suddenly
shown to sales with a score, or a scored lead whose score stops being updated), so a scorer
refuses to start (:func:`check_groups`, one-line :class:`ConfigError`) when the groups the
score history recorded since ``experiment.started_at`` are not those the current settings
give: the rule compares the recorded groups of already-scored leads with today's draw, which
needs no state beyond the history itself. Starting a new experiment on purpose is setting
``experiment.started_at`` to its start: groups recorded before are then an earlier
experiment's, left alone.

What a control lead's CRM record gets (``experiment.control_crm``) is applied by the CRM
payloads (:mod:`leadscoring.serving.payloads`): nothing at all, or only the control marker.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from leadscoring.config import ConfigError, ExperimentConfig
from leadscoring.serving.history import read_history_tail

log = logging.getLogger(__name__)

#: The groups, as the score history and every output spell them.
CONTROL, TREATMENT = "control", "treatment"
#: The scored lead's field holding the group (:class:`leadscoring.scored_lead.ScoredLead`).
GROUP_FIELD = "experiment_group"
#: Recorded groups compared with today's draw at most (the latest), so the check costs the
#: same whatever the history's size; a changed salt moves about 2 s (1 - s) of them.
CHECK_ROWS = 200_000

_SCALE = float(2**64)


def draws(ids: Iterable[Any], salt: str) -> np.ndarray:
    """Each id's number in [0, 1): the first 8 bytes of SHA-256 of salt, a unit separator
    (U+001F) and the id as text, over 2**64."""
    prefix = salt.encode("utf-8") + b"\x1f"
    sha = hashlib.sha256
    return np.fromiter(
        (int.from_bytes(sha(prefix + str(i).encode("utf-8")).digest()[:8], "big") / _SCALE for i in ids), dtype="float64"
    )


def experiment_groups(ids: Iterable[Any], experiment: ExperimentConfig) -> np.ndarray:
    """Each id's group (``control`` or ``treatment``) under ``experiment`` (see the module)."""
    return np.where(draws(ids, experiment.salt) < experiment.control_share, CONTROL, TREATMENT).astype(object)


def is_control(groups: pd.Series | np.ndarray | Iterable[Any]) -> np.ndarray:
    """True where a recorded group is ``control`` (text as written; empty or null: not)."""
    values = groups.astype(object) if isinstance(groups, pd.Series) else pd.Series(list(groups), dtype=object)
    return (values.astype(str).str.strip().str.lower() == CONTROL).to_numpy()


def check_groups(experiment: ExperimentConfig, history_path: str | os.PathLike[str]) -> int:
    """Refuse (one-line :class:`ConfigError`) settings that would move already-scored leads to
    another group: the latest :data:`CHECK_ROWS` groups recorded in the score history at
    ``history_path`` since ``experiment.started_at`` must be those ``experiment`` draws.
    Returns the leads compared (0 without an experiment or recorded groups)."""
    if not experiment.enabled:
        return 0
    started = pd.Timestamp(experiment.started_at) if experiment.started_at is not None else None

    def recorded(table: pa.Table) -> pa.Array:
        mask = pc.is_valid(table[GROUP_FIELD])
        return mask if started is None else pc.and_(mask, pc.greater_equal(table["scored_at"], started))

    table = read_history_tail(history_path, ["lead_id", "scored_at", GROUP_FIELD], CHECK_ROWS, recorded)
    if table.num_rows == 0:
        return 0
    frame = pd.DataFrame({"lead": table["lead_id"].to_pandas(), "was": table[GROUP_FIELD].to_pandas()})
    frame = frame.drop_duplicates("lead", keep="last")
    now = experiment_groups(frame["lead"], experiment)
    moved = frame["was"].to_numpy(dtype=object) != now
    if moved.any():
        first = int(np.flatnonzero(moved)[0])
        lead, was = frame["lead"].iloc[first], frame["was"].iloc[first]
        raise ConfigError(
            f"experiment: the score history's groups were drawn with another experiment.salt or control_share: "
            f"{int(moved.sum())} of {len(frame)} lead(s) scored since "
            f"{experiment.started_at.isoformat() if experiment.started_at else 'the experiment began'} would change group "
            f"(lead {lead}: {was} there, {now[first]} now); a lead keeps its group for life: restore the salt and "
            "control_share, or set experiment.started_at to start a new experiment"
        )
    log.debug("experiment: %d recorded group(s) match the current salt and share", len(frame))
    return len(frame)
