"""What scoring one lead gives: the one declaration of a scored lead.

:class:`ScoredLead` lists the fields in their output order, each with its API type, its
description and a :class:`Column` saying how the other paths carry it. Every path derives
from it: the scores files' columns, order and Arrow types (:func:`file_schema`: CSV and
parquet), the API's response model and OpenAPI docs (the class itself), the default CRM
custom-field names and the fields ``scoring.crm_fields`` accepts (:data:`DEFAULT_CRM_FIELDS`,
:data:`SCORE_FIELDS`), and the score columns of the score history (:func:`history_fields`).
A new field is one line here (plus the scorer computing its values).

The module stays light (pydantic only, as the configuration): Arrow types are built when
asked for.
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class Column:
    """How one field travels beyond the API.

    ``arrow``: its type in the scores files (``string``, ``float64``, ``int64``, ``int16``, or
    ``list<struct>``: a list of the item model's fields, one readable line in CSV);
    ``crm``: its default CRM custom-field name (None: pushed only when ``scoring.crm_fields``
    names it); ``history``: its type in the score history (None: not kept there)."""

    arrow: str
    crm: str | None = None
    history: str | None = None


class Reason(BaseModel):
    """One reason behind a lead's score."""

    variable: Annotated[str, Field(description="The model variable (column or derived feature)."), Column("string")]
    label: Annotated[str, Field(description="The variable's plain-language name."), Column("string")]
    value: Annotated[str, Field(description="The lead's value of it, as shown to people."), Column("string")]
    effect: Annotated[float, Field(description="Contribution to the log-odds: above 0 pushes the score up."), Column("float64")]
    evidence: Annotated[
        str, Field(description="How leads with this value converted in training (empty when too few)."), Column("string")
    ]


class ScoredLead(BaseModel):
    """One scored lead: the API's answer per lead, one row of the scores files. The segment
    comes only with a segment model; the reasons, fit and engagement scores only with reasons
    on. In the scores files the id column has the configured id column's name."""

    lead_id: Annotated[str, Field(description="The lead's id, as sent."), Column("string", history="string")]
    probability: Annotated[float, Field(description="Conversion probability, 0-1, rounded to 6 decimals."), Column("float64")]
    score: Annotated[
        int,
        Field(description="0-100 score: 100 × probability, rounded half up."),
        Column("int64", crm="predictive_score", history="int16"),
    ]
    bucket: Annotated[
        str, Field(description="The score's bucket (scoring.buckets), e.g. HOT."), Column("string", crm="score_bucket")
    ]
    recommended_action: Annotated[
        str, Field(description="The bucket's recommended action."), Column("string", crm="recommended_action")
    ]
    grade: Annotated[str, Field(description="Letter grade (scoring.grades), e.g. A."), Column("string", crm="grade")]
    fit_score: Annotated[
        int | None,
        Field(description="0-100: share of training leads whose profile (fit variables) added less (null: none in the model)."),
        Column("int16", crm="fit_score"),
    ] = None
    engagement_score: Annotated[
        int | None,
        Field(description="0-100: share of training leads whose engagement variables added less (null: none in the model)."),
        Column("int16", crm="engagement_score"),
    ] = None
    segment: Annotated[str | None, Field(description="The lead's segment name (with a segment model)."), Column("string")] = None
    reasons: Annotated[
        list[Reason],
        Field(description="Strongest reasons pushing the score up, then pulling it down."),
        Column("list<struct>", crm="reasons"),
    ] = []
    previous_score: Annotated[
        int | None,
        Field(description="The lead's latest score in the score history (null: never scored)."),
        Column("int16"),
    ] = None
    trend: Annotated[
        str, Field(description="Against the previous score: improving, steady, declining or new."), Column("string", crm="trend")
    ]
    experiment_group: Annotated[
        str | None,
        Field(
            description="The lead's group in the A/B test (experiment section): control (its CRM record gets no score; "
            "sales works it the usual way) or treatment; the same for life. Null: no experiment."
        ),
        Column("string", history="string"),
    ] = None
    model_version: Annotated[
        str,
        Field(description="The scoring model's version: the first 12 characters of its SHA-256."),
        Column("string", crm="model_version", history="string"),
    ]
    scored_at: Annotated[
        str,
        Field(description="Scoring time, UTC, ISO 8601 to the second (2026-11-23T10:15:00Z)."),
        Column("string", crm="scored_at", history="timestamp[us, UTC]"),
    ]


def _column(model: type[BaseModel], name: str) -> Column:
    found = [m for m in model.model_fields[name].metadata if isinstance(m, Column)]
    if len(found) != 1:
        raise TypeError(f"{model.__name__}.{name}: declare exactly one Column(...) for it")
    return found[0]


#: The declared fields and how each travels, in output order (the id first).
COLUMNS: dict[str, Column] = {name: _column(ScoredLead, name) for name in ScoredLead.model_fields}

#: The id field (named after the configured id column in the scores files).
ID_FIELD = next(iter(COLUMNS))

#: The output fields after the id, in order: what ``scoring.crm_fields`` may name.
SCORE_FIELDS: tuple[str, ...] = tuple(COLUMNS)[1:]


def _is_optional_int(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType) and set(get_args(annotation)) == {int, type(None)}


#: Whole numbers that may be empty (NaN in arrays, null in JSON/parquet, empty in CSV).
OPTIONAL_INT_FIELDS: tuple[str, ...] = tuple(n for n in SCORE_FIELDS if _is_optional_int(ScoredLead.model_fields[n].annotation))


def _value_type(annotation: Any) -> type:
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    return get_origin(annotation) or annotation


#: Each declared field's Python type, empty or not: ``int``, ``float``, ``str`` or ``list``.
VALUE_TYPES: dict[str, type] = {n: _value_type(f.annotation) for n, f in ScoredLead.model_fields.items()}

#: Default CRM custom-field name per output field (``scoring.crm_fields``).
DEFAULT_CRM_FIELDS: dict[str, str] = {n: c.crm for n, c in COLUMNS.items() if c.crm is not None}


def _arrow_type(spec: str, item: type[BaseModel] | None = None) -> pa.DataType:
    import pyarrow as pa

    if spec == "list<struct>":
        if item is None:
            raise TypeError("list<struct> needs a list of a model")
        return pa.list_(pa.struct([(n, _arrow_type(_column(item, n).arrow)) for n in item.model_fields]))
    if spec == "timestamp[us, UTC]":
        return pa.timestamp("us", tz="UTC")
    return pa.type_for_alias(spec)


def _item_model(name: str) -> type[BaseModel] | None:
    args = get_args(ScoredLead.model_fields[name].annotation)
    return args[0] if args and isinstance(args[0], type) and issubclass(args[0], BaseModel) else None


def is_structured(name: str) -> bool:
    """True for a field that is a list of records (``reasons``): one readable line in CSV."""
    return COLUMNS[name].arrow == "list<struct>"


def in_order(fields: Iterable[str]) -> list[str]:
    """``fields`` in declared order; ValueError naming any that is not declared."""
    given = set(fields)
    unknown = sorted(given - set(SCORE_FIELDS))
    if unknown:
        raise ValueError(f"{unknown} are not fields of a scored lead (leadscoring.scored_lead.ScoredLead)")
    return [n for n in SCORE_FIELDS if n in given]


def file_schema(id_column: str, fields: Iterable[str] = SCORE_FIELDS, *, text: bool) -> pa.Schema:
    """The scores files' columns: ``id_column`` (text), then ``fields`` in declared order with
    their Arrow types; ``text`` (CSV) makes each structured field one line of text."""
    import pyarrow as pa

    columns = [(id_column, _arrow_type(COLUMNS[ID_FIELD].arrow))]
    for name in in_order(fields):
        columns.append((name, pa.string() if text and is_structured(name) else _arrow_type(COLUMNS[name].arrow, _item_model(name))))
    return pa.schema(columns)


def history_fields() -> list[tuple[str, pa.DataType]]:
    """The score history's columns from a scoring, in declared order, with their Arrow types."""
    return [(n, _arrow_type(c.history)) for n, c in COLUMNS.items() if c.history is not None]
