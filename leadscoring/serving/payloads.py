"""The CRM write-back payload per lead (used by notebook 10 and ``leadscoring push``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from leadscoring.io import atomic_path


def crm_payloads(scores: pd.DataFrame, id_column: str) -> list[dict[str, Any]]:
    """The CRM write-back payload per lead."""
    return [
        {"lead_id": str(r[id_column]), "custom_fields": {
            "predictive_score": int(r["score"]), "score_cluster": str(r["bucket"]),
            "recommended_action": str(r["recommended_action"])}}
        for r in scores[[id_column, "score", "bucket", "recommended_action"]].to_dict("records")
    ]


def write_payloads(scores: pd.DataFrame, id_column: str, dest: str | os.PathLike[str]) -> Path:
    """CRM payloads as JSON lines, written atomically."""
    with atomic_path(dest) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            for p in crm_payloads(scores, id_column):
                fh.write(json.dumps(p, ensure_ascii=False) + "\n")
    return Path(dest)

