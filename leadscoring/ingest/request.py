"""The API request model of one lead (``POST /score``), from :class:`LeadSchema`: the same
rules as files, applied by pydantic to JSON; an id that is a list or an object is refused
(a file's cell cannot hold one)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from leadscoring.ingest.schema import LeadSchema, range_text, text
from leadscoring.ingest.values import parse_dates


def request_model(schema: LeadSchema) -> type[BaseModel]:
    """A pydantic model of one lead in the raw column names, applying the rules above:
    the id required, every other column optional (missing = unknown), the creation date and
    the outcome accepted and not read, other fields refused (ignored with
    ``data.allow_extra_columns``, as in a file)."""
    fields: dict[str, Any] = {schema.id_column: (str | int, Field(..., description="lead id: a non-blank string or an integer"))}
    if schema.visitor_column:
        fields[schema.visitor_column] = (str | None, Field(None, description="visitor key of the lead's events"))
    for col in schema.numeric:
        lo, hi = schema.ranges[col]
        what = "behavioural feature (omit: computed from the events)" if col in schema.event_columns else "finite number"
        fields[col] = (float | None, Field(None, description=f"{what}, range [{lo}, {hi}]"))
    for col in schema.categorical:
        fields[col] = (str | None, Field(None, description="category (unseen values are scored)"))
    for col in schema.yes_no:
        fields[col] = (str | None, Field(None, description=f"one of {schema.yes_no_spellings}"))
    # A lead as the export has it: its creation date (checked as in a file) and outcome are accepted, not read.
    for col, what in ((schema.date_column, "creation date (data.date_column)"), (schema.target_column, "outcome")):
        if col is not None and col not in fields:
            fields[col] = (str | int | float | None, Field(None, description=f"{what}: accepted as a file has it, not read"))

    def lead_id(cls: type, v: object) -> str:
        # JSON can send what a file cell cannot: a list or an object is no id (not its text).
        if v is not None and not isinstance(v, str | int | float):
            raise ValueError("must be a non-blank string or an integer (not a list or an object)")
        return schema.lead_id(v)

    def number(cls: type, v: object, info: Any) -> float | None:
        if v is None:
            return None
        x = schema.number(v)
        if x in schema.missing_codes.get(info.field_name, ()):
            return None
        if not math.isnan(x) and schema.outside(info.field_name, x):
            raise ValueError(range_text(*schema.ranges[info.field_name]))
        return None if math.isnan(x) else x

    def yes_no(cls: type, v: str | None) -> str | None:
        if not schema.yes_no_ok(text(v)):
            raise ValueError(f"must be one of {schema.yes_no_spellings}")
        return v

    def lead_date(cls: type, v: object) -> object:
        # checked as a file's date is (it is kept with the lead's inputs, which a retraining reads)
        if text(v) is not None and parse_dates(pd.Series([v], dtype=object), schema.date_format).isna().iloc[0]:
            written = f" written as {schema.date_format} (data.date_format)" if schema.date_format else ""
            raise ValueError(f"must be a date{written}")
        return v

    validators: dict[str, Any] = {"lead_id": field_validator(schema.id_column, mode="before")(lead_id)}
    if schema.date_column is not None:
        validators["lead_date"] = field_validator(schema.date_column, mode="before")(lead_date)
    if schema.numeric:
        validators["numbers"] = field_validator(*schema.numeric, mode="before")(number)
    if schema.yes_no:
        validators["yes_no_values"] = field_validator(*schema.yes_no)(yes_no)
    # other fields: refused (a misspelt name), or ignored as a file's are with data.allow_extra_columns
    extra = "ignore" if schema.allow_extra_columns else "forbid"
    return create_model("Lead", __config__=ConfigDict(extra=extra), __validators__=validators, **fields)
