"""The scorer's output columns in each output's representation: an Arrow table for CSV
(``reasons`` as one readable line) or parquet (``reasons`` as a list of structs), JSON
records for the API (``reasons`` as a list of objects), with empty optional scores as
null/empty rather than NaN. The fields and their values are the same on every path."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from leadscoring.serving.scorer import OPTIONAL_INT_FIELDS
from leadscoring.training.explanations import reason_text

#: Parquet type of ``reasons``: a list per lead, strongest positive first, then negative.
REASON_TYPE = pa.list_(
    pa.struct(
        [
            ("variable", pa.string()),
            ("label", pa.string()),
            ("value", pa.string()),
            ("effect", pa.float64()),
            ("evidence", pa.string()),
        ]
    )
)


def _optional_int(values: np.ndarray) -> pa.Array:
    v = np.asarray(values, dtype=float)
    missing = np.isnan(v)
    return pa.array(np.where(missing, 0, v).astype(np.int16), mask=missing, type=pa.int16())


def arrow_table(cols: Mapping[str, np.ndarray], *, text_reasons: bool) -> pa.Table:
    """The scored columns as an Arrow table; ``text_reasons`` for CSV."""
    arrays = {}
    for k, v in cols.items():
        if k == "reasons":
            arrays[k] = (
                pa.array([reason_text(r) for r in v], type=pa.string()) if text_reasons else pa.array(v.tolist(), type=REASON_TYPE)
            )
        elif k in OPTIONAL_INT_FIELDS:
            arrays[k] = _optional_int(v)
        else:
            arrays[k] = pa.array(v, type=pa.string() if v.dtype == object else None)
    return pa.table(arrays)


def reasons_as_text(table: pa.Table) -> pa.Table:
    """A parquet scores table with ``reasons`` turned into the CSV's readable line."""
    if "reasons" not in table.column_names or pa.types.is_string(table.schema.field("reasons").type):
        return table
    text = pa.array([reason_text(r or []) for r in table.column("reasons").to_pylist()], type=pa.string())
    return table.set_column(table.column_names.index("reasons"), "reasons", text)


def json_records(cols: Mapping[str, np.ndarray], rename: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """One JSON-ready dict per lead (numpy scalars to Python, NaN to None), keys renamed by
    ``rename``; the optional scores are integers or None."""
    rename = rename or {}
    keys = list(cols)
    columns = []
    for k in keys:
        v = cols[k]
        if k in OPTIONAL_INT_FIELDS:
            columns.append([None if math.isnan(x) else int(x) for x in np.asarray(v, dtype=float).tolist()])
        elif k == "reasons":
            columns.append(list(v))
        else:
            columns.append(v.tolist())
    names = [rename.get(k, k) for k in keys]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
