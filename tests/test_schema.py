"""One schema (LeadSchema) for files and API requests: the same value is accepted or
refused the same way whether it arrives in a CSV export or in a JSON request."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from pydantic import ValidationError

from leadscoring.config import load_config
from leadscoring.errors import LeadDataError
from leadscoring.ingest.schema import LeadSchema

from .conftest import write_project


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    return LeadSchema(load_config(write_project(tmp_path_factory.mktemp("p"), data__decimal=",", data__thousands=".")))


def _frame(schema: LeadSchema, **values: object) -> pd.DataFrame:
    row = {schema.id_column: "A-1", **{c: "" for c in (*schema.numeric, *schema.categorical, *schema.yes_no)}}
    row.update(values)
    return pd.DataFrame([row], dtype=object)


def _both(schema: LeadSchema, **values: object) -> tuple[object, object]:
    """(frame result or LeadDataError, request result or ValidationError) for one lead."""
    try:
        frame = schema.validate(_frame(schema, **values), require_target=False).iloc[0].to_dict()
    except LeadDataError as exc:
        frame = exc
    try:
        request = schema.request_model()(**{schema.id_column: "A-1", **values}).model_dump()
    except ValidationError as exc:
        request = exc
    return frame, request


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("numeric", "abc"),
        ("numeric", "inf"),
        ("numeric", "nan"),
        ("numeric", "-1"),
        ("yes_no", "Maybe"),
        ("id", ""),
        ("id", "   "),
    ],
)
def test_refused_by_both(schema, column, value):
    col = {"numeric": schema.numeric[0], "yes_no": schema.yes_no[0], "id": schema.id_column}[column]
    frame, request = _both(schema, **{col: value})
    assert isinstance(frame, LeadDataError) and col in str(frame)
    assert isinstance(request, ValidationError) and request.errors()[0]["loc"] == (col,)


@pytest.mark.parametrize(("text", "number"), [("1.234,5", 1234.5), ("3", 3.0), ("0,25", 0.25)])
def test_numbers_in_the_export_notation_are_read_alike(schema, text, number):
    col = schema.numeric[1]
    frame, request = _both(schema, **{col: text})
    assert frame[col] == request[col] == number


def test_ids_and_missing_values_alike(schema):
    frame, request = _both(schema, **{schema.id_column: "  00660728 ", schema.numeric[0]: ""})
    assert frame[schema.id_column] == request[schema.id_column] == "00660728"
    assert math.isnan(frame[schema.numeric[0]]) and request[schema.numeric[0]] is None


def test_json_only_values(schema):
    """What a CSV cannot carry: JSON booleans and fractional ids are refused."""
    model = schema.request_model()
    for values in ({schema.id_column: True}, {schema.id_column: 1.5}, {schema.id_column: "x", schema.numeric[0]: True}):
        with pytest.raises(ValidationError):
            model(**values)
    assert model(**{schema.id_column: 7}).model_dump()[schema.id_column] == "7"


def test_an_export_without_ids_is_numbered_by_row(tmp_path, sample):
    from leadscoring.ingest.load import iter_valid_chunks

    cfg = load_config(write_project(tmp_path, data__id_column="row_number", data__id_from_row_number=True))
    export = sample.drop(columns=["id", "compra"]).head(25)
    src = tmp_path / "no_ids.csv"
    export.to_csv(src, sep=";", index=False)
    chunks = list(iter_valid_chunks(src, cfg, chunk_rows=10))
    assert [c["row_number"].tolist() for c in chunks][1] == [str(i) for i in range(11, 21)]
    assert pd.concat(chunks)["row_number"].tolist() == [str(i) for i in range(1, 26)]
    with pytest.raises(LeadDataError, match="has a column 'row_number'"):
        LeadSchema(cfg).validate(export.assign(row_number=1), require_target=False)


def test_numeric_missing_codes_are_missing_in_files_and_requests(tmp_path):
    cfg = load_config(write_project(tmp_path, data__numeric_missing={"visitas_total": [-1]}))
    schema = LeadSchema(cfg)
    frame = schema.validate(_frame(schema, visitas_total="-1"), require_target=False)
    assert math.isnan(frame["visitas_total"].iloc[0])  # not averaged as -1, and not refused by the range [0, ...]
    assert schema.request_model()(id="A", visitas_total=-1).visitas_total is None
    with pytest.raises(LeadDataError, match="below 0"):
        schema.validate(_frame(schema, visitas_total="-2"), require_target=False)


def test_a_configured_creation_date_is_read_and_checked(tmp_path, sample):
    cfg = load_config(write_project(tmp_path, data__date_column="created"))
    schema = LeadSchema(cfg)
    frame = sample.head(3).astype(object).assign(created=["2026-01-05", "2026-02-01 10:30", ""])
    out = schema.validate(frame)
    assert out["created"].dtype.kind == "M" and out["created"].isna().tolist() == [False, False, True]
    with pytest.raises(LeadDataError, match=r"date column 'created' has value\(s\) that are not dates: 'soon'"):
        schema.validate(frame.assign(created=["2026-01-05", "soon", ""]))
    with pytest.raises(LeadDataError, match="missing the date column 'created'"):
        schema.validate(sample.head(3))
    assert "created" not in schema.validate(sample.head(3).drop(columns="compra"), require_target=False)
