import pandas as pd
import pytest

from leadscoring.errors import LeadDataError
from leadscoring.ingest.load import read_leads
from leadscoring.ingest.schema import validate_leads
from leadscoring.ingest.split import fingerprint, split_validation

from .conftest import RAW


def test_reads_shipped_export(leads, cfg):
    assert leads.shape == (7274, 21)
    assert leads["compra"].mean() == pytest.approx(0.37586, abs=1e-4)
    assert leads["visitas_total"].dtype == "float64"
    assert leads["id"].is_unique


def _write(tmp_path, text, name="leads.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _edit(raw_text, line_no, column, value):
    lines = raw_text.splitlines()
    header = lines[0].split(";")
    cells = lines[line_no - 1].split(";")
    cells[header.index(column)] = value
    lines[line_no - 1] = ";".join(cells)
    return "\n".join(lines) + "\n"


def test_missing_column_is_named(tmp_path, raw_text, cfg):
    df = pd.read_csv(RAW, sep=";", dtype=str).drop(columns=["ocupacion"])
    p = tmp_path / "x.csv"
    df.to_csv(p, sep=";", index=False)
    with pytest.raises(LeadDataError, match=r"missing required column\(s\) \['ocupacion'\]"):
        read_leads(p, cfg)


def test_text_in_numeric_column_names_column_value_and_line(tmp_path, raw_text, cfg):
    p = _write(tmp_path, _edit(raw_text, 12, "visitas_total", "doce"))
    with pytest.raises(LeadDataError) as err:
        read_leads(p, cfg)
    msg = str(err.value)
    assert "'visitas_total'" in msg and "'doce' (line 12)" in msg and "\n" not in msg


def test_duplicate_ids_are_listed_with_lines(tmp_path, raw_text, cfg):
    first_id = raw_text.splitlines()[1].split(";")[0]
    p = _write(tmp_path, _edit(raw_text, 5, "id", first_id))
    with pytest.raises(LeadDataError) as err:
        read_leads(p, cfg)
    assert "duplicate id" in str(err.value) and "line 2" in str(err.value) and "line 5" in str(err.value)


def test_empty_file_and_header_only(tmp_path, raw_text, cfg):
    with pytest.raises(LeadDataError, match="empty"):
        read_leads(_write(tmp_path, ""), cfg)
    with pytest.raises(LeadDataError, match="no leads"):
        read_leads(_write(tmp_path, raw_text.splitlines()[0] + "\n", "h.csv"), cfg)


def test_unexpected_column_rejected_unless_allowed(leads, cfg):
    extra = leads.assign(color="red")
    with pytest.raises(LeadDataError, match=r"unexpected column\(s\) \['color'\]"):
        validate_leads(extra, cfg)
    relaxed = cfg.model_copy(update={"data": cfg.data.model_copy(update={"allow_extra_columns": True})})
    assert "color" not in validate_leads(extra, relaxed).columns


def test_bad_yes_no_and_target_values(tmp_path, raw_text, cfg):
    with pytest.raises(LeadDataError, match=r"'descarga_lm'.*'Maybe' \(line 3\)"):
        read_leads(_write(tmp_path, _edit(raw_text, 3, "descarga_lm", "Maybe")), cfg)
    with pytest.raises(LeadDataError, match=r"target column 'compra'.*'2' \(line 4\)"):
        read_leads(_write(tmp_path, _edit(raw_text, 4, "compra", "2"), "t.csv"), cfg)


def test_wrong_separator_is_explained(tmp_path, raw_text, cfg):
    with pytest.raises(LeadDataError, match="separator"):
        read_leads(_write(tmp_path, raw_text.replace(";", "|")), cfg)


def test_target_optional_for_scoring(leads, cfg):
    X = leads.drop(columns=["compra"]).head(3)
    out = validate_leads(X, cfg, require_target=False)
    assert "compra" not in out.columns and len(out) == 3
    with pytest.raises(LeadDataError, match="compra"):
        validate_leads(X, cfg, require_target=True)


def test_split_is_stratified_and_reproducible(leads, cfg):
    w1, v1 = split_validation(leads, cfg)
    w2, v2 = split_validation(leads, cfg)
    assert len(v1) == round(0.2 * len(leads)) and len(w1) + len(v1) == len(leads)
    assert abs(v1["compra"].mean() - w1["compra"].mean()) < 0.005
    assert fingerprint(v1) == fingerprint(v2) and not set(w1["id"]) & set(v1["id"])


def test_out_of_range_value_is_named(tmp_path, raw_text, cfg):
    with pytest.raises(LeadDataError, match=r"'visitas_total' has value\(s\) below 0: -3\.0 \(line 6\)"):
        read_leads(_write(tmp_path, _edit(raw_text, 6, "visitas_total", "-3")), cfg)
