"""The CRM write-back payload per lead (used by notebook 10 and ``leadscoring push``): the
configured score fields under the configured custom-field names (``scoring.crm_fields``).
A lead of the A/B test's control group (``experiment_group`` = control in the scores) gets
what ``experiment.control_crm`` says: no payload at all, or only the control marker."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscoring.config import DEFAULT_CRM_FIELDS, ExperimentConfig
from leadscoring.io import atomic_path
from leadscoring.scored_lead import VALUE_TYPES
from leadscoring.serving.experiment import GROUP_FIELD, is_control
from leadscoring.training.explanations import reason_text

log = logging.getLogger(__name__)


def _value(field: str, v: Any) -> Any:
    """One field's value as pushed, by its declared type (:mod:`leadscoring.scored_lead`)."""
    missing = v is None or (isinstance(v, float) and math.isnan(v))
    kind = VALUE_TYPES.get(field, str)
    if kind is list:  # one line; a lead with no reason has an empty cell in CSV
        return "" if missing else v if isinstance(v, str) else reason_text(list(v))
    if missing:
        return None
    if kind is int:
        return int(v)
    if kind is float:
        return float(v)
    return v.item() if isinstance(v, np.generic) else str(v)


def crm_payloads(
    scores: pd.DataFrame,
    id_column: str,
    fields: Mapping[str, str] | None = None,
    experiment: ExperimentConfig | None = None,
) -> list[dict[str, Any]]:
    """The CRM write-back payload per lead: ``{"lead_id", "custom_fields": {name: value}}``
    with each score field of ``fields`` (default :data:`DEFAULT_CRM_FIELDS`) the scores have.
    ``reasons`` is one readable line; empty optional scores are null. A control lead (the
    scores' ``experiment_group``) gets no payload, or with ``experiment.control_crm: marker``
    only ``{control_field: control_value}`` (``experiment``: default the section's defaults)."""
    fields = dict(DEFAULT_CRM_FIELDS if fields is None else fields)
    absent = [f for f in fields if f not in scores.columns]
    if absent:
        log.warning("scores lack %s (written by an older version?): left out of the CRM payloads", absent)
    used = [f for f in fields if f in scores.columns]
    control = is_control(scores[GROUP_FIELD]) if GROUP_FIELD in scores.columns else np.zeros(len(scores), dtype=bool)
    policy = experiment or ExperimentConfig()
    marker = {policy.control_field: policy.control_value}
    records = scores[[id_column, *used]].to_dict("records")
    out = []
    for r, held in zip(records, control.tolist(), strict=True):
        if not held:
            out.append({"lead_id": str(r[id_column]), "custom_fields": {fields[f]: _value(f, r[f]) for f in used}})
        elif policy.control_crm == "marker":
            out.append({"lead_id": str(r[id_column]), "custom_fields": dict(marker)})
    return out


def write_payloads(
    scores: pd.DataFrame,
    id_column: str,
    dest: str | os.PathLike[str],
    fields: Mapping[str, str] | None = None,
    experiment: ExperimentConfig | None = None,
) -> Path:
    """CRM payloads as JSON lines (see :func:`crm_payloads`), written atomically."""
    with atomic_path(dest) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            for p in crm_payloads(scores, id_column, fields, experiment):
                fh.write(json.dumps(p, ensure_ascii=False) + "\n")
    return Path(dest)
