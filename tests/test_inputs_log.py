"""Every score keeps its inputs (issue #23, deliverable 1): each scoring path (the `score`
command, the service, notebook 10's scoring and run append, the dask engine) records each
lead's configured columns as received, with its score in the score history; a retrain trains
on those inputs (the first scoring, or the last before the outcome), never on the fields of a
later export; old history parts without inputs still read; leads never scored are skipped
and counted."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from leadscoring import cli
from leadscoring.config import ConfigError, ProjectConfig, load_config
from leadscoring.crm.outcomes import OutcomeRow, append_outcome_rows, read_outcome_history
from leadscoring.errors import LeadDataError
from leadscoring.loop.inputs import inputs_as_scored, scored_inputs
from leadscoring.loop.retrain import outcomes_from_history, retrain
from leadscoring.serving import recorder as recorder_module
from leadscoring.serving.batch import score_file, score_stream
from leadscoring.serving.history import (
    ScoreHistory,
    append_run_scores,
    append_scores,
    append_scores_file,
    compact,
    history_folder,
    read_history,
)
from leadscoring.serving.inputs import input_columns, inputs_file_for, inputs_json
from leadscoring.serving.scorer import Scorer
from leadscoring.serving.service import create_app, lead_model

from .conftest import write_project

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
COLUMNS = ["lead_id", "model_version", "scored_at", "inputs"]


def _json(row: dict) -> str:
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _own(cfg: ProjectConfig, tmp_path, flush: float = 3600.0) -> ProjectConfig:
    """``cfg`` with a score history of this test's own, and the service recording (every
    ``flush`` seconds: the tests flush themselves)."""
    return cfg.model_copy(
        update={
            "paths": cfg.paths.model_copy(update={"score_history": str(tmp_path / "score_history")}),
            "service": cfg.service.model_copy(update={"history_flush_seconds": flush}),
        }
    )


def _status_field(cfg: ProjectConfig) -> str:
    """A categorical field known only after the sales contact (filled in after the call)."""
    return next(c for c in cfg.data.post_contact if c in cfg.data.columns.categorical)


def _export(frame: pd.DataFrame, cfg: ProjectConfig, path) -> pd.DataFrame:
    """Write leads as an export (the configured separator) and return its cells as text."""
    frame.to_csv(path, sep=cfg.data.separator, index=False)
    return pd.read_csv(path, sep=cfg.data.separator, dtype=str, keep_default_na=False)


def _recorded(cfg: ProjectConfig) -> pd.DataFrame:
    return read_history(cfg.path("score_history"), COLUMNS).to_pandas()


# -- the encoding ------------------------------------------------------------------------------


def test_inputs_are_compact_json_with_sorted_keys_text_kept_as_text():
    columns = {
        "b": ["x", 'quote " and é', None, "", "1,5"],
        "a": [1.5, float("nan"), 2.0, 3, -1],
        "c": [True, False, None, True, False],
    }
    got = inputs_json(columns, 5).to_pylist()
    rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    rows[1]["a"] = None  # NaN is missing: null
    assert got == [_json(r) for r in rows]
    assert got[4] == '{"a":-1,"b":"1,5","c":false}'  # text as received, numbers as numbers
    many = {"k": ["same"] * 300 + ["other"] * 300}  # encoded once per distinct value
    assert inputs_json(many, 600).to_pylist() == ['{"k":"same"}'] * 300 + ['{"k":"other"}'] * 300
    assert inputs_json({}, 2).to_pylist() == ["{}", "{}"]


def test_the_loop_section_says_which_scoring_trains(tmp_path):
    assert ProjectConfig.model_fields["loop"].default.train_on_inputs == "last_before_outcome"
    assert load_config(write_project(tmp_path / "a", loop__train_on_inputs="first")).loop.train_on_inputs == "first"
    with pytest.raises(ConfigError, match="loop.train_on_inputs"):
        load_config(write_project(tmp_path / "b", loop__train_on_inputs="latest"))


# -- each scoring path records the inputs --------------------------------------------------------


def test_score_command_keeps_each_lead_s_inputs_as_read(tmp_path, small_models, sample, capsys):
    config = write_project(tmp_path / "p")
    pcfg = load_config(config)
    d = pcfg.data
    leads = sample.head(60)  # the target column too: it is never an input
    cells = _export(leads, pcfg, tmp_path / "leads.csv")
    out = tmp_path / "scores.csv"
    args = ["--config", str(config), "score", "--input", str(tmp_path / "leads.csv"), "--output", str(out)]
    assert cli.main([*args, "--models-dir", str(small_models), "--no-progress"]) == 0
    assert "score history: 60 rows appended" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leads.csv", "p", "scores.csv"]  # no inputs file left beside

    history = _recorded(pcfg)
    scores = pd.read_csv(out, dtype=str)
    assert history["lead_id"].tolist() == scores[d.id_column].tolist() == cells[d.id_column].tolist()
    assert (history["model_version"] == scores["model_version"]).all()
    assert (history["scored_at"] == pd.to_datetime(scores["scored_at"], utc=True)).all()
    kept = [c for c in input_columns(pcfg) if c in cells.columns]
    assert d.target_column not in kept and d.id_column not in kept and kept
    expected = [_json({c: row[c] for c in kept}) for row in cells.to_dict("records")]
    assert history["inputs"].tolist() == expected  # every cell exactly as in the file, text as text


def test_notebook_10_scoring_and_the_run_append_keep_the_inputs(tmp_path, cfg, small_models, sample):
    """Notebook 10 scores with ``score_stream(..., inputs_path=inputs_file_for(dest))``; a
    promoted run appends with ``append_run_scores``, which finds the inputs file beside the
    scores. An inputs file left by an earlier scoring never attaches to other scores."""
    own = _own(cfg, tmp_path)
    scorer = Scorer.load(own, small_models)
    cells = _export(sample.head(40).drop(columns=own.data.target_column), own, tmp_path / "leads.csv")
    results = tmp_path / "results"
    dest = results / "scores.parquet"
    score_stream(scorer, tmp_path / "leads.csv", dest, progress=False, inputs_path=inputs_file_for(dest))
    assert inputs_file_for(dest) == results / "scores.inputs.parquet" and inputs_file_for(results / "scores.csv") == (
        results / "scores.inputs.parquet"
    )
    assert append_run_scores(own.path("score_history"), results, own.data.id_column) == 40
    kept = [c for c in input_columns(own) if c in cells.columns]
    assert _recorded(own)["inputs"].tolist() == [_json({c: r[c] for c in kept}) for r in cells.to_dict("records")]

    score_stream(scorer, tmp_path / "leads.csv", dest, progress=False, scored_at="2030-01-01T00:00:00Z")  # no inputs file now
    assert append_run_scores(own.path("score_history"), results, own.data.id_column) == 40
    assert _recorded(own)["inputs"].iloc[40:].isna().all()  # the old inputs file is another scoring's


def test_the_service_records_each_scoring_off_the_request_path(tmp_path, cfg, small_models, sample, monkeypatch):
    own = _own(cfg, tmp_path)
    app = create_app(own, Scorer.load(own, small_models))
    client = TestClient(app)
    recorder = app.state.history_recorder
    d, Lead = own.data, lead_model(own)
    bodies = []
    for row in sample.head(3).drop(columns=d.target_column).to_dict("records"):
        bodies.append({k: (None if pd.isna(v) else v) for k, v in row.items()})
    number = own.data.columns.numeric[0]
    bodies[0][number] = "3"  # text sent for a number: kept as the number the model saw
    first = client.post("/score", json=bodies[0])
    assert first.status_code == 200
    assert client.post("/score/batch", json=bodies[1:]).status_code == 200
    folder = history_folder(own.path("score_history"))
    assert not folder.exists()  # a request only hands its leads over: nothing written yet

    assert recorder.flush() == 3 and recorder.flush() == 0
    history = _recorded(own)
    assert history["lead_id"].tolist() == [str(b[d.id_column]) for b in bodies]  # the warm-up lead is not recorded
    assert history["model_version"].tolist() == [first.json()["model_version"]] * 3
    assert history["scored_at"].iloc[0] == pd.Timestamp(first.json()["scored_at"])
    kept = [c for c in input_columns(own) if c in Lead.model_fields]
    expected = [_json({c: Lead.model_validate(b).model_dump()[c] for c in kept}) for b in bodies]
    assert history["inputs"].tolist() == expected and json.loads(expected[0])[number] == 3.0

    again = client.post("/score", json=bodies[0]).json()  # the service's own scoring is now the previous score
    assert again["previous_score"] == first.json()["score"] and again["trend"] == "steady"

    calls = []

    def full_disk(*args, **kwargs):
        calls.append(kwargs["job_id"])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(recorder_module, "append_scorings", full_disk)
    assert recorder.flush() == 0  # logged, kept for the next flush
    monkeypatch.undo()
    recorder.close()  # a clean stop appends what waits
    assert len(_recorded(own)) == 4 and len(calls) == 1


def test_service_recording_can_be_turned_off(tmp_path, cfg, small_models):
    own = _own(cfg, tmp_path, flush=0)
    assert create_app(own, Scorer.load(own, small_models)).state.history_recorder is None
    with pytest.raises(ConfigError, match="history_flush_seconds"):
        load_config(write_project(tmp_path / "bad", service__history_flush_seconds=-1))


def test_the_dask_engine_records_the_inputs(tmp_path, cfg, small_models, sample):
    from dask.distributed import LocalCluster

    from leadscoring.serving.distributed import score_dask

    own = _own(cfg, tmp_path)
    d = own.data
    leads = sample.head(80).drop(columns=d.target_column)
    parts = [_export(leads.iloc[:50], own, tmp_path / "a.csv"), _export(leads.iloc[50:], own, tmp_path / "b.csv")]
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        res = score_dask(
            own, str(tmp_path / "*.csv"), tmp_path / "out", models_dir=small_models, scheduler=cluster.scheduler_address
        )
    assert res["leads"] == 80
    cells = pd.concat(parts, ignore_index=True)
    kept = [c for c in input_columns(own) if c in cells.columns]
    history = _recorded(own)
    assert history["lead_id"].tolist() == cells[d.id_column].tolist()
    assert history["inputs"].tolist() == [_json({c: r[c] for c in kept}) for r in cells.to_dict("records")]


# -- the training set: inputs as scored ----------------------------------------------------------


def _outcomes(tmp_path, rows: list[OutcomeRow]) -> pd.DataFrame:
    path = tmp_path / "outcome_history.csv"
    append_outcome_rows(path, rows)
    return read_outcome_history(path)


def test_first_or_last_scoring_before_the_outcome(tmp_path, cfg):
    own = _own(cfg, tmp_path)
    d = own.data
    column = own.data.columns.categorical[0]
    path = own.path("score_history")
    for day, value in ((0, "first"), (2, "second"), (10, "after the outcome")):
        append_scores(path, ["a", "b"], [40, 60], f"m{day}", T0 + timedelta(days=day), inputs=[_json({column: value})] * 2)
    outcomes = _outcomes(
        tmp_path,
        [
            OutcomeRow("a", "converted", T0 + timedelta(days=20), T0 + timedelta(days=5), False, "{}"),  # outcome_at counts
            OutcomeRow("b", "lost", T0 + timedelta(days=3), None, False, "{}"),  # no outcome_at: the change's time
            OutcomeRow("c", "open", T0 + timedelta(days=3), None, False, "{}"),
        ],
    )
    last = inputs_as_scored(own, outcomes)
    assert last[d.id_column].tolist() == ["a", "b"] and last[column].tolist() == ["second", "second"]
    assert last[d.target_column].tolist() == [d.positive_value, d.negative_value]
    assert last["model_version"].tolist() == ["m2", "m2"] and (last["scored_at"] == T0 + timedelta(days=2)).all()
    first = inputs_as_scored(own, outcomes, "first")
    assert first[column].tolist() == ["first", "first"] and first["model_version"].tolist() == ["m0", "m0"]
    assert list(last.columns[:1]) == [d.id_column] and list(last.columns[-3:]) == [d.target_column, "model_version", "scored_at"]
    assert set(input_columns(own)) - set(own.event_columns) <= set(last.columns)  # every configured column, null if not recorded
    assert last[own.data.columns.numeric[0]].isna().all()

    reopened = _outcomes(tmp_path, [OutcomeRow("a", "open", T0 + timedelta(days=30), None, False, '{"x":1}')])
    assert inputs_as_scored(own, reopened)[d.id_column].tolist() == ["b"]  # the latest state of each lead counts


def test_leads_never_scored_or_scored_only_after_the_outcome_are_skipped_and_counted(tmp_path, cfg, caplog):
    own = _own(cfg, tmp_path)
    path = own.path("score_history")
    column = own.data.columns.categorical[0]
    append_scores(path, ["late"], [50], "m1", T0 + timedelta(days=9), inputs=[_json({column: "x"})])
    append_scores(path, ["ok"], [50], "m1", T0, inputs=[_json({column: "x"})])
    rows = [OutcomeRow(i, "lost", T0 + timedelta(days=1), None, False, "{}") for i in ("ok", "late", "never-1", "never-2")]
    with caplog.at_level(logging.INFO, logger="leadscoring.loop.inputs"):
        found = scored_inputs(own, _outcomes(tmp_path, rows))
    assert found.rows[own.data.id_column].tolist() == ["ok"]
    assert found.never_scored == ["never-1", "never-2"] and found.scored_after_outcome == ["late"] and found.skipped == 3
    assert "1 of 4 converted or lost lead(s); skipped: 2 never scored, 1 scored only after the outcome" in caplog.text


def test_old_parts_without_inputs_still_read_and_fall_back_to_leads(tmp_path, cfg, sample, caplog):
    own = _own(cfg, tmp_path)
    d = own.data
    folder = history_folder(own.path("score_history"))
    folder.mkdir(parents=True)
    old = sample.head(30)
    ids = old[d.id_column].astype(str).tolist()
    written_before = pa.table(  # a part of an earlier version: no inputs column
        {
            "lead_id": pa.array(ids[:20], pa.string()),
            "score": pa.array([50] * 20, pa.int16()),
            "model_version": pa.array(["m0"] * 20, pa.string()),
            "scored_at": pa.array([T0] * 20, pa.timestamp("us", tz="UTC")),
            "job_id": pa.array(["old"] * 20, pa.string()),
        }
    )
    pq.write_table(written_before, folder / f"part-{0:020d}-0123456789abcdef-00000000.parquet")
    column = d.columns.categorical[0]
    recorded = [_json({column: "as scored"})] * 10
    append_scores(folder, ids[20:], [70] * 10, "m1", T0, inputs=recorded)
    table = read_history(folder, COLUMNS)
    assert table["inputs"].null_count == 20 and table["inputs"].to_pylist()[20:] == recorded
    assert ScoreHistory(folder).latest().to_dict() == dict.fromkeys(ids[:20], 50) | dict.fromkeys(ids[20:], 70)
    assert compact(folder).rows == 30 and read_history(folder, COLUMNS)["inputs"].to_pylist() == table["inputs"].to_pylist()

    pcfg = load_config(write_project(tmp_path / "p", paths__score_history=str(folder)))
    outcome = {True: "converted", False: "lost"}
    won = old[d.target_column].astype(int).astype(bool).tolist()
    append_outcome_rows(
        pcfg.path("outcome_history"),
        [OutcomeRow(i, outcome[w], T0 + timedelta(days=1), None, False, "{}") for i, w in zip(ids, won, strict=True)],
    )
    with caplog.at_level(logging.WARNING, logger="leadscoring.loop.retrain"):
        only_recorded = outcomes_from_history(pcfg)
    assert sorted(only_recorded[d.id_column]) == sorted(ids[20:]) and set(only_recorded[column]) == {"as scored"}
    assert "20 converted or lost lead(s) were scored before inputs were recorded; skipped" in caplog.text
    export = tmp_path / "leads_today.csv"
    old.drop(columns=d.target_column).to_csv(export, sep=d.separator, index=False)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="leadscoring.loop.retrain"):
        both = outcomes_from_history(pcfg, export)
    assert sorted(both[d.id_column]) == sorted(ids) and "20 converted or lost lead(s) were scored before inputs" in caplog.text
    assert "their features come from leads_today.csv" in caplog.text
    assert both.set_index(d.id_column)[d.target_column].astype(int).to_dict() == dict(zip(ids, map(int, won), strict=True))


def test_a_field_filled_in_after_scoring_never_reaches_the_training_set(tmp_path, small_models, leads, sample, caplog):
    """Day 1: leads scored (the `score` command). Later: a status-like field is filled in for
    every lead, and a second export (scored again, after the outcomes) carries it; outcomes
    come back. The retrain's training set holds the values the leads were scored with."""
    config = write_project(tmp_path / "p")
    pcfg = load_config(config)
    d = pcfg.data
    status = _status_field(pcfg)
    models = pcfg.path("models_dir")
    shutil.copytree(small_models, models)
    new = leads[~leads[d.id_column].isin(sample[d.id_column])].head(120).reset_index(drop=True)
    day1 = _export(new.drop(columns=d.target_column), pcfg, tmp_path / "day1.csv")
    scores1 = tmp_path / "day1_scores.csv"
    args = ["--config", str(config), "score", "--input", str(tmp_path / "day1.csv"), "--output", str(scores1), "--no-progress"]
    assert cli.main(args) == 0
    scored_at = pd.Timestamp(pd.read_csv(scores1, dtype=str)["scored_at"].iloc[0])

    later = new.drop(columns=d.target_column).assign(**{status: "Filled in after the call"})
    later.to_csv(tmp_path / "day2.csv", sep=d.separator, index=False)
    rescored = scored_at + timedelta(days=2)  # scored again after the outcomes: never used for them
    at2, scores2 = rescored.strftime("%Y-%m-%dT%H:%M:%SZ"), tmp_path / "day2_scores.csv"
    score_file(pcfg, tmp_path / "day2.csv", scores2, scored_at=at2, inputs_path=inputs_file_for(scores2))  # as `score` does
    assert append_scores_file(pcfg.path("score_history"), scores2, d.id_column, inputs_file=inputs_file_for(scores2)) == 120
    outcome = {1: "converted", 0: "lost"}
    append_outcome_rows(
        pcfg.path("outcome_history"),
        [
            OutcomeRow(str(i), outcome[int(t)], scored_at + timedelta(days=1), None, False, '{"status":"closed"}')
            for i, t in zip(new[d.id_column], new[d.target_column], strict=True)
        ],
    )
    assert len(_recorded(pcfg)) == 240  # both scorings are in the history

    result = retrain(pcfg, tolerance=-1.0)  # the outcome history, no --leads: the inputs as scored
    assert result.new_leads == 120 and not result.promoted
    trained = pd.read_parquet(pcfg.path("work_dir") / "history.parquet").set_index(d.id_column)
    got = trained.loc[new[d.id_column].astype(str), status]
    want = day1.set_index(d.id_column)[status].replace("", None)
    assert "Filled in after the call" not in set(got.dropna())
    assert got.tolist() == want.loc[got.index].tolist()  # the old value: what the lead was scored with

    first = scored_inputs(pcfg, read_outcome_history(pcfg.path("outcome_history")), "first").rows
    assert (first["scored_at"] == scored_at).all() and "Filled in after the call" not in set(first[status])


def test_a_recorded_input_the_configuration_now_refuses_is_one_line_naming_the_lead(tmp_path):
    pcfg = load_config(write_project(tmp_path / "p"))
    column = next(c for c, (low, _) in pcfg.data.ranges.items() if low is not None)
    append_scores(pcfg.path("score_history"), ["a", "b"], [50, 50], "m1", T0, inputs=[_json({column: "1"}), _json({column: "-5"})])
    append_outcome_rows(
        pcfg.path("outcome_history"), [OutcomeRow(i, "lost", T0 + timedelta(days=1), None, False, "{}") for i in ("a", "b")]
    )
    with pytest.raises(LeadDataError) as exc:
        outcomes_from_history(pcfg)
    text = str(exc.value)
    assert "\n" not in text and "inputs as scored" in text and f"'{column}'" in text and "-5" in text and "(lead b)" in text


def test_a_later_scoring_without_inputs_gives_way_to_the_last_one_with_them(tmp_path, cfg):
    own = _own(cfg, tmp_path)
    column = own.data.columns.categorical[0]
    path = own.path("score_history")
    append_scores(path, ["a", "b"], [40, 40], "m1", T0, inputs=[_json({column: "kept"})] * 2)
    append_scores(path, ["a", "b"], [50, 50], "m2", T0 + timedelta(days=1), inputs=[None, _json({column: "newer"})])  # a mixed part
    outcomes = _outcomes(tmp_path, [OutcomeRow(i, "lost", T0 + timedelta(days=2), None, False, "{}") for i in ("a", "b")])
    got = inputs_as_scored(own, outcomes).set_index(own.data.id_column)
    assert got[column].to_dict() == {"a": "kept", "b": "newer"} and got["model_version"].to_dict() == {"a": "m1", "b": "m2"}
