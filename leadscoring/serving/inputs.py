"""What a scoring keeps of each lead's input, so a retrain learns from the fields as they were
when the lead was scored, never from the CRM's fields of today (a status tag filled in after
the call would leak the outcome into the training data).

Kept: the configured columns a lead is scored from (:func:`input_columns`: the visitor key of
its events, every data column, a behavioural feature when the lead was sent with it, the date
and cut-off columns), exactly as the scoring received them: a CSV cell as its text (``"1,5"``
stays ``"1,5"``, an empty cell ``""``), a parquet value with its type, an API field as the
service validated it (numbers as numbers; a missing-value code as null). Not kept: the id
(the score history row's ``lead_id``), the target, columns outside the configuration, and the
behavioural features computed from the events (the event store gives them again as of the
row's ``scored_at``).

One lead's input is one compact JSON object with sorted keys (:func:`inputs_json`), the score
history's ``inputs`` column (:mod:`leadscoring.serving.history`). The batch engine writes
them beside its output as an *inputs file* (:func:`inputs_file_for`; columns of
:data:`INPUTS_FILE_SCHEMA`), which the history append joins to the scores by lead, model
version and time."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from leadscoring.config import ProjectConfig
from leadscoring.ingest.values import map_unique

#: The score history's column holding each scoring's input.
INPUTS_COLUMN = "inputs"

#: The inputs file of a batch scoring: one row per lead scored, in the output's order.
INPUTS_FILE_SCHEMA = pa.schema(
    [("lead_id", pa.string()), ("model_version", pa.string()), ("scored_at", pa.string()), (INPUTS_COLUMN, pa.string())]
)

#: The inputs file's name ends so (``scores.parquet`` -> ``scores.inputs.parquet``).
INPUTS_FILE_SUFFIX = ".inputs.parquet"


def input_columns(cfg: ProjectConfig) -> list[str]:
    """The configured columns a scoring keeps, in the configuration's order: the visitor key
    (events), the data columns (numeric, categorical, yes/no, then the behavioural features),
    the date column and the events' cut-off column. Never the id nor the target."""
    d = cfg.model_data
    ev = cfg.events
    names = [
        *([ev.lead_key] if ev is not None else []),
        *d.columns.all,
        *([d.date_column] if d.date_column else []),
        *([ev.cutoff_column] if ev is not None and ev.cutoff_column else []),
    ]
    own = {d.id_column, d.target_column}
    return [n for i, n in enumerate(names) if n not in own and n not in names[:i]]


def _json_value(value: object) -> str:
    """One value as JSON: text as a string, numbers and booleans as such, a date as ISO 8601
    text, a missing value (None, NaN, NaT) as null."""
    if value is None or value is pd.NA or value is pd.NaT:
        return "null"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        x = float(value)
        return "null" if math.isnan(x) else json.dumps(x)
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if isinstance(value, datetime | date):
        return json.dumps(value.isoformat())
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def inputs_json(columns: Mapping[str, Sequence[Any] | np.ndarray | pd.Series], n: int) -> pa.Array:
    """The ``n`` leads' inputs, one compact JSON object per lead with sorted keys (the same
    text as ``json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``),
    from ``columns`` (name -> one value per lead). Each column's values are encoded once per
    distinct value and the objects joined in Arrow: a chunk of 100,000 leads in a fraction of
    a second."""
    names = sorted(columns)
    if not names:
        return pa.array(["{}"] * n, type=pa.string())
    parts = []
    for i, name in enumerate(names):
        values = np.asarray(columns[name], dtype=object)
        if len(values) != n:
            raise ValueError(f"inputs: column {name!r} has {len(values)} values for {n} leads")
        head = ("{" if i == 0 else "") + json.dumps(name, ensure_ascii=False) + ":"
        tail = "}" if i == len(names) - 1 else ""
        parts.append(pa.array(map_unique(values, lambda v, h=head, t=tail: h + _json_value(v) + t), type=pa.string()))
    return parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, ",")


def raw_inputs(cfg: ProjectConfig, raw: pd.DataFrame) -> pa.Array:
    """The inputs of a frame of leads, one per row: the configured input columns it has (header
    names trimmed, as validation does). A chunk as read from the export keeps its text as
    text; validated leads (the cycle's) give their validated values."""
    wanted = set(input_columns(cfg))
    found = {str(c).strip(): c for c in raw.columns}
    return inputs_json({name: raw[col].to_numpy(dtype=object) for name, col in found.items() if name in wanted}, len(raw))


def record_inputs(cfg: ProjectConfig, rows: Sequence[Mapping[str, Any]]) -> pa.Array:
    """The inputs of validated API requests (one dict per lead, every field present): the
    configured input columns of the request, a field not sent as null."""
    if not rows:
        return pa.array([], type=pa.string())
    present = [c for c in input_columns(cfg) if c in rows[0]]
    return inputs_json({c: [r.get(c) for r in rows] for c in present}, len(rows))


def decode_inputs(texts: Iterable[str | None]) -> list[dict[str, Any]]:
    """The recorded inputs as dicts (column -> value as received; null: an empty dict)."""
    return [json.loads(t) if t is not None else {} for t in texts]


def inputs_file_for(scores_path: str | os.PathLike[str]) -> Path:
    """The inputs file beside a scores file (``scores.parquet`` and ``scores.csv`` ->
    ``scores.inputs.parquet``)."""
    p = Path(scores_path)
    return p.with_name(p.stem + INPUTS_FILE_SUFFIX)


def inputs_table(ids: pa.Array | np.ndarray, model_version: pa.Array, scored_at: pa.Array, inputs: pa.Array) -> pa.Table:
    """Rows of an inputs file (:data:`INPUTS_FILE_SCHEMA`)."""
    return pa.Table.from_arrays(
        [pa.array(ids, type=pa.string()), model_version.cast(pa.string()), scored_at.cast(pa.string()), inputs],
        schema=INPUTS_FILE_SCHEMA,
    )
