"""Rows that fail validation, set aside (``scoring.bad_rows: set_aside``) instead of refusing
the whole file: on a generated German export (the schema), and through ``leadscoring score``
(the rejected-rows file, a file in another layout, a stale rejected-rows file)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from leadscoring.cli import main
from leadscoring.config import load_config
from leadscoring.errors import LeadDataError, OutputPathError
from leadscoring.ingest.load import read_leads
from leadscoring.ingest.schema import BadRows, validate_leads
from leadscoring.scaffold import init_project
from leadscoring.serving.batch import rejected_path, score_file

from .conftest import write_project


def _german(n: int = 300, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "Lead-Nr.": [f"L{i:05d}" for i in range(n)],
            "Quelle": rng.choice(["Messe", "Google", "Empfehlung"], n),
            "Besuche": rng.poisson(3, n).astype(str),
            "Newsletter": rng.choice(["Ja", "Nein"], n),
            "Abschluss": rng.choice(["ja", "nein"], n),
        }
    )


@pytest.fixture()
def german(tmp_path):
    df = _german()
    export = tmp_path / "export.csv"
    export.write_text(df.to_csv(sep=";", index=False), encoding="utf-8")
    dest, _ = init_project(tmp_path / "p", export, "Abschluss", positive="ja")
    cfg = load_config(dest / "01_Documentos" / "config.yaml")
    assert cfg.model_data.columns.numeric == ["Besuche"] and cfg.model_data.columns.yes_no == ["Newsletter"]
    return cfg, df


def _bad(df: pd.DataFrame) -> pd.DataFrame:
    """Four rows with problems: text in a number, an unknown yes/no answer, a blank id and an id twice."""
    bad = df.copy()
    bad.loc[10, "Besuche"] = "viele"  # line 12: the header is line 1
    bad.loc[20, "Newsletter"] = "Vielleicht"
    bad.loc[30, "Lead-Nr."] = ""
    bad.loc[41, "Lead-Nr."] = bad.loc[40, "Lead-Nr."]
    return bad


def test_rows_with_problems_are_set_aside_with_their_line_and_problem(german, tmp_path):
    cfg, df = german
    path = tmp_path / "new_leads.csv"
    path.write_text(_bad(df).to_csv(sep=";", index=False), encoding="utf-8")
    with pytest.raises(LeadDataError, match=r"^new_leads\.csv: column 'Lead-Nr\.' \(id\) is empty at line 32$"):
        read_leads(path, cfg, require_target=False)  # without BadRows: the first problem stops the file, as before

    bad = BadRows()
    leads = read_leads(path, cfg, require_target=False, bad_rows=bad)
    assert len(leads) == len(df) - 4  # a repeated id: its first row is kept
    assert sorted(bad.records) == [10, 20, 30, 41]
    assert bad.first() == "line 12: column 'Besuche' must be numeric but has text value(s): 'viele'"
    table = bad.table()
    assert table["line"].tolist() == ["line 12", "line 22", "line 32", "line 43"]  # file order
    assert "'Vielleicht'" in table["problem"].iloc[1] and "is empty" in table["problem"].iloc[2]
    assert table["problem"].iloc[3] == f"column 'Lead-Nr.' (id) repeats the id of an earlier line: {df.loc[40, 'Lead-Nr.']!r}"
    assert table["Besuche"].iloc[0] == "viele"  # the row as the file has it
    assert not leads["Lead-Nr."].isin([df.loc[10, "Lead-Nr."], df.loc[20, "Lead-Nr."]]).any()
    assert (leads["Lead-Nr."] == df.loc[40, "Lead-Nr."]).sum() == 1

    # a file without a column the model does not read: its rows set aside are written as the file has them
    lacking, bad = _bad(df).drop(columns=["Quelle", "Abschluss"]), BadRows()
    validate_leads(lacking, cfg, require_target=False, may_lack=["Quelle"], bad_rows=bad)
    assert list(bad.table().columns) == ["line", "problem", "Lead-Nr.", "Besuche", "Newsletter"]


@pytest.fixture()
def scoring_project(tmp_path, small_models, sample):
    cfg = load_config(write_project(tmp_path, scoring__bad_rows="set_aside", scoring__max_bad_share=0.02))
    shutil.copytree(small_models, cfg.path("models_dir"))
    leads = sample.drop(columns=cfg.data.target_column).head(400).astype(object).where(lambda d: d.notna(), "")
    return cfg, leads


def _write(cfg, rows: pd.DataFrame, path):
    path.write_text(rows.to_csv(sep=cfg.data.separator, index=False), encoding="utf-8")
    return path


def test_score_sets_aside_bad_rows_across_chunks_and_refuses_a_file_in_another_layout(scoring_project, tmp_path, capsys):
    cfg, leads = scoring_project
    numeric = cfg.model_data.columns.numeric[0]
    rows = leads.copy()
    rows.loc[5, numeric] = "n/d?"
    rows.loc[350, cfg.data.id_column] = rows.loc[3, cfg.data.id_column]  # an id of an earlier chunk
    src, out = _write(cfg, rows, tmp_path / "new.csv"), tmp_path / "scores.csv"
    code = main(
        ["--config", str(cfg.source), "score", "--input", str(src), "--output", str(out), "--chunk-rows", "100", "--no-history"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert f"2 row(s) set aside, not scored -> {rejected_path(out)}" in printed
    scores = pd.read_csv(out, dtype={cfg.data.id_column: str})
    assert len(scores) == 398 and scores[cfg.data.id_column].is_unique
    rejected = pd.read_csv(rejected_path(out), sep=cfg.data.separator, dtype=str, keep_default_na=False)
    assert list(rejected.columns) == ["line", "problem", *leads.columns]  # the rows as read, the later chunk's too
    assert rejected["line"].tolist() == ["line 7", "line 352"]
    assert f"column '{numeric}' must be numeric" in rejected["problem"].iloc[0]
    assert rejected["problem"].iloc[1] == f"column 'id' (id) repeats the id of an earlier line: {rows.loc[3, 'id']!r}"
    assert rejected[numeric].iloc[0] == "n/d?" and rejected.iloc[1, 2:].tolist() == rows.loc[350].astype(str).tolist()
    assert rejected_path(tmp_path / "s.parquet").name == "s.parquet.rejected.csv"  # never the CSV output's

    # a clean file, even scored with bad_rows stop: the earlier run's rejected rows are not left beside the new scores
    assert score_file(cfg, _write(cfg, leads, tmp_path / "clean.csv"), out, bad_rows="stop")["rejected"] == 0
    assert not rejected_path(out).exists() and len(pd.read_csv(out)) == 400

    # more than scoring.max_bad_share (2 %) of the rows: the file is refused and nothing replaced
    before = out.read_bytes()
    many = leads.copy()
    many.loc[:19, numeric] = "?"
    with pytest.raises(
        LeadDataError, match=r"other_layout\.csv: 20 of 400 rows have problems \(5\.0%\), more than scoring\.max_bad_share"
    ):
        score_file(cfg, _write(cfg, many, tmp_path / "other_layout.csv"), out)
    assert out.read_bytes() == before and not rejected_path(out).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []

    # an output named like a spreadsheet would be CSV text under that name
    with pytest.raises(OutputPathError, match=r"scores\.xlsx: scores are written as CSV \(\.csv\) or parquet"):
        score_file(cfg, src, tmp_path / "scores.xlsx")

    # every row with a problem: refused whatever max_bad_share allows
    anything = cfg.model_copy(update={"scoring": cfg.scoring.model_copy(update={"max_bad_share": 1.0})})
    every = leads.assign(**{numeric: "?"})
    with pytest.raises(LeadDataError, match=r"every one of its 400 rows has a problem; the first: line 2: column"):
        score_file(anything, _write(cfg, every, tmp_path / "every.csv"), out)
    assert out.read_bytes() == before

    # stop: the first bad row refuses the file, as without the setting
    with pytest.raises(LeadDataError, match=r"^new\.csv: duplicate id\(s\) in column .* \(line 352\)$"):
        score_file(cfg, src, out, bad_rows="stop")


def test_set_aside_rows_do_not_depend_on_the_chunk_size_and_never_touch_the_input(scoring_project, tmp_path):
    cfg, leads = scoring_project
    numeric, id_col = cfg.model_data.columns.numeric[0], cfg.data.id_column
    rows = leads.copy()
    rows.loc[4, numeric] = "xx"  # line 6: set aside ...
    rows.loc[5, id_col] = rows.loc[4, id_col]  # ... so its id's repeat on line 7 is the first row scored with it
    rows.loc[150, numeric] = "yy"  # line 152, after ...
    rows.loc[105, id_col] = rows.loc[0, id_col]  # ... a repeat (line 107) of an id a first chunk scored
    src = _write(cfg, rows, tmp_path / "new.csv")
    results = {}
    for size in (100, 6, 1000):
        out = tmp_path / f"s{size}.csv"
        res = score_file(cfg, src, out, chunk_rows=size)
        rejected = pd.read_csv(rejected_path(out), sep=cfg.data.separator, dtype=str, keep_default_na=False)
        results[size] = (res["leads"], res["first_rejected"], rejected["line"].tolist())
    assert results[100] == results[6] == results[1000]
    assert results[100] == (397, results[100][1], ["line 6", "line 107", "line 152"])  # in file order
    assert results[100][1].startswith("line 6: column")

    # scoring a fixed rejected-rows file back into the output it came from: refused, the file kept
    fixed = rejected_path(tmp_path / "s100.csv")
    before = fixed.read_bytes()
    with pytest.raises(OutputPathError, match=r"its rejected-rows file s100\.rejected\.csv is the input"):
        score_file(cfg, fixed, tmp_path / "s100.csv", bad_rows="stop")
    assert fixed.read_bytes() == before


def test_line_labels_go_on_from_the_last_call_and_start_again_for_earlier_records(tmp_path, german):
    from leadscoring.ingest.reader import row_locator

    cfg, df = german
    df = df.copy()
    df.loc[3, "Quelle"] = "two\nlines"  # record 3 spans lines 5-6: later records sit one line lower
    path = tmp_path / "multi.csv"
    path.write_text(df.to_csv(sep=";", index=False), encoding="utf-8")
    locate = row_locator(path, cfg)
    assert locate([2, 10]) == ["line 4", "line 13"]
    assert locate([50]) == ["line 53"]  # on from record 11
    assert locate([0, 4]) == ["line 2", "line 7"]  # earlier: from the top again
    import pickle

    assert pickle.loads(pickle.dumps(locate))([299]) == ["line 302"]  # a copy for a worker process


def test_a_parquet_file_is_scored_by_worker_processes_with_its_rows_named(scoring_project, tmp_path):
    cfg, leads = scoring_project
    rows = leads.copy()
    rows.loc[7, cfg.model_data.columns.numeric[0]] = "many"
    src = tmp_path / "new.parquet"
    rows.astype(str).to_parquet(src, index=False)
    res = score_file(cfg, src, tmp_path / "s.csv", jobs=2, chunk_rows=150)  # the rows' labels travel to the workers
    assert res["leads"] == 399 and res["first_rejected"].startswith("row 8: column")
