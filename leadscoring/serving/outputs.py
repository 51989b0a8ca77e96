"""The scorer's output columns in each output's representation: an Arrow table for CSV
(``reasons`` as one readable line) or parquet (``reasons`` as a list of structs), JSON
records for the API (``reasons`` as a list of objects), with empty optional scores as
null/empty rather than NaN. Columns, order and types come from the declaration of a scored
lead (:mod:`leadscoring.scored_lead`); the fields and their values are the same on every path."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from leadscoring.scored_lead import OPTIONAL_INT_FIELDS, SCORE_FIELDS, file_schema, in_order, is_structured
from leadscoring.training.explanations import reason_text


def _optional_int(values: np.ndarray, type_: pa.DataType) -> pa.Array:
    v = np.asarray(values, dtype=float)
    missing = np.isnan(v)
    return pa.array(np.where(missing, 0, v).astype(type_.to_pandas_dtype()), mask=missing, type=type_)


def arrow_table(cols: Mapping[str, np.ndarray], *, text_reasons: bool) -> pa.Table:
    """The scored columns (the lead's id first, as the scorer returns them) as an Arrow table
    in the declared order and types (:func:`~leadscoring.scored_lead.file_schema`);
    ``text_reasons`` for CSV. ValueError for a column that is not a declared field."""
    id_column, *fields = cols
    schema = file_schema(id_column, fields, text=text_reasons)
    arrays = [pa.array(cols[id_column], type=schema.field(0).type)]
    for field in schema.remove(0):
        v = cols[field.name]
        if is_structured(field.name):
            arrays.append(pa.array([reason_text(r) for r in v] if text_reasons else v.tolist(), type=field.type))
        elif field.name in OPTIONAL_INT_FIELDS:
            arrays.append(_optional_int(v, field.type))
        else:
            arrays.append(pa.array(v, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def reasons_as_text(table: pa.Table) -> pa.Table:
    """A parquet scores table with ``reasons`` turned into the CSV's readable line."""
    for i, name in enumerate(table.column_names):
        if name in SCORE_FIELDS and is_structured(name) and not pa.types.is_string(table.schema.field(i).type):
            text = pa.array([reason_text(r or []) for r in table.column(i).to_pylist()], type=pa.string())
            table = table.set_column(i, name, text)
    return table


def json_records(cols: Mapping[str, np.ndarray], rename: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """One JSON-ready dict per lead (numpy scalars to Python, NaN to None), the lead's id first
    then the fields in declared order, keys renamed by ``rename``; the optional scores are
    integers or None."""
    rename = rename or {}
    id_column, *fields = cols
    keys = [id_column, *in_order(fields)]
    columns = []
    for k in keys:
        v = cols[k]
        if k in OPTIONAL_INT_FIELDS:
            columns.append([None if math.isnan(x) else int(x) for x in np.asarray(v, dtype=float).tolist()])
        elif k != id_column and is_structured(k):
            columns.append(list(v))
        else:
            columns.append(v.tolist())
    names = [rename.get(k, k) for k in keys]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
