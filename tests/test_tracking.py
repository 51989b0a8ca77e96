"""The tracking workbook 01_Documentos/tracking.xlsx: rewritten by every production run (trial
runs marked, never replacing what is in service), retraining and rollback; read back with
openpyxl; formatted (frozen header, filters, number formats, widths); a failing rewrite leaves
the previous workbook intact. The runs use the runner tests' fake papermill; the retraining the
small models of the ``small_models`` fixture."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import datetime
from pathlib import Path

import openpyxl
import pytest

from leadscoring.artifacts import SCORE_MODEL, load_model, read_manifest
from leadscoring.config import load_config
from leadscoring.formats import number
from leadscoring.io import append_json_line
from leadscoring.loop.retrain import retrain
from leadscoring.loop.versions import rollback
from leadscoring.run import QUICK_PARAMETERS, RunFailed, run_pipeline
from leadscoring.tracking import (
    AUC,
    DATE,
    FAILED_FILL,
    IN_SERVICE_FILL,
    SHARE,
    TRIAL_FILL,
    Workbook,
    fitted_steps,
    tracking_path,
    update_tracking,
    write_tracking,
)

from .conftest import write_project
from .test_runner import faked_run_project

SHEETS = ["Transformations", "Runs", "Models", "About"]


def _sheet(cfg, name: str) -> list[dict]:
    """A sheet's rows as {header: value}."""
    ws = openpyxl.load_workbook(tracking_path(cfg))[name]
    rows = list(ws.iter_rows(values_only=True))
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def _column(ws, header: str) -> int:
    return [c.value for c in ws[1]].index(header) + 1


@pytest.fixture()
def run_project(tmp_path, monkeypatch):
    """A temporary project whose notebooks are faked (products written without a kernel)."""
    return faked_run_project(tmp_path, monkeypatch)


def test_every_run_rewrites_the_workbook_and_a_trial_run_only_adds_its_marked_row(run_project):
    cfg, fake = run_project
    first = run_pipeline(cfg, progress=False, run_id="20250301T090000Z")
    assert openpyxl.load_workbook(tracking_path(cfg)).sheetnames == SHEETS
    in_service = read_manifest(cfg.path("models_dir") / SCORE_MODEL)["sha256"]
    models_before = _sheet(cfg, "Models")
    assert [m["In service"] for m in models_before] == ["Yes"] and models_before[0]["SHA-256"] == in_service[:12]

    run_pipeline(cfg, dict(QUICK_PARAMETERS), progress=False, run_id="20250302T090000Z", promote=False)
    runs = _sheet(cfg, "Runs")
    assert [r["Kind"] for r in runs] == ["Production run", "Trial run (not promoted)"]
    assert [r["Changed what is in service"] for r in runs] == ["Yes", "No"]
    assert runs[0]["Time (UTC)"] == datetime(2025, 3, 1, 9) and runs[0]["Run / cycle id"] == first.run_id
    assert runs[0]["ROC-AUC"] == pytest.approx(0.8)  # the run's metrics
    assert "not promoted" in runs[1]["Decision"]
    assert _sheet(cfg, "Models") == models_before  # the trial's models are not in service: nothing replaced

    second = run_pipeline(cfg, progress=False, run_id="20250303T090000Z")  # a new model set: the first archived
    models = _sheet(cfg, "Models")
    assert [m["In service"] for m in models] == ["No", "Yes"]
    assert models[0]["SHA-256"] == in_service[:12] and models[0]["Kept in"].startswith("04_Modelos/versions/")
    assert _sheet(cfg, "Runs")[-1]["Replaced set archived in"] == second.archived.relative_to(cfg.root).as_posix()

    fake.fail = {"02_models"}
    with pytest.raises(RunFailed):
        run_pipeline(cfg, progress=False, run_id="20250304T090000Z")
    runs = _sheet(cfg, "Runs")
    assert [r["Status"] for r in runs] == ["ok", "ok", "ok", "failed"]
    assert "boom in 02_models" in runs[-1]["Details"] and runs[-1]["Changed what is in service"] == "No"

    ws = openpyxl.load_workbook(tracking_path(cfg))["Runs"]
    fills = {r: ws.cell(r, 1).fill.fgColor.rgb[-6:] for r in (2, 3, 5)}
    assert fills == {2: "000000", 3: TRIAL_FILL, 5: FAILED_FILL}  # trial grey, failure red, others plain
    models_ws = openpyxl.load_workbook(tracking_path(cfg))["Models"]
    assert models_ws.cell(3, 1).fill.fgColor.rgb[-6:] == IN_SERVICE_FILL


def test_the_workbook_is_formatted_as_a_person_would(run_project):
    cfg, _ = run_project
    run_pipeline(cfg, progress=False, run_id="20250301T090000Z")
    wb = openpyxl.load_workbook(tracking_path(cfg))
    assert wb.active.title == "Runs"
    for name in ("Transformations", "Runs", "Models"):
        ws = wb[name]
        headers = [c.value for c in ws[1]]
        assert all(h and "_" not in h and h[0].isupper() for h in headers), headers  # labels, not snake_case
        assert ws.freeze_panes == "B2" and ws.auto_filter.ref.startswith("A1:")
        assert all(c.font.bold for c in ws[1])
        widths = [ws.column_dimensions[openpyxl.utils.get_column_letter(j)].width for j in range(1, len(headers) + 1)]
        assert all(8 <= w <= 60 for w in widths), widths
    runs = wb["Runs"]
    assert runs.cell(2, _column(runs, "Time (UTC)")).number_format == DATE
    assert isinstance(runs.cell(2, _column(runs, "Time (UTC)")).value, datetime)
    assert runs.cell(2, _column(runs, "ROC-AUC")).number_format == AUC
    assert runs.cell(2, _column(runs, "Converters in top 30 %")).number_format == SHARE
    assert runs.cell(2, _column(runs, "Decision")).alignment.wrap_text


def test_a_failing_rewrite_leaves_the_previous_workbook_intact(run_project, monkeypatch, caplog):
    cfg, _ = run_project
    run_pipeline(cfg, progress=False, run_id="20250301T090000Z")
    path = tracking_path(cfg)
    before = path.read_bytes()

    def broken_save(self, filename):
        Path(filename).write_bytes(b"half a workbook")
        raise OSError("disk went away")

    monkeypatch.setattr(Workbook, "save", broken_save)
    with caplog.at_level(logging.WARNING, logger="leadscoring.tracking"):
        result = run_pipeline(cfg, progress=False, run_id="20250302T090000Z")  # the run itself succeeds
    assert result.status == "ok" and result.promoted
    assert path.read_bytes() == before
    assert "tracking.xlsx: not rewritten (disk went away)" in caplog.text
    assert sorted(p.name for p in path.parent.iterdir() if "tracking" in p.name) == ["tracking.xlsx"]  # no temporary left
    with pytest.raises(OSError, match="disk went away"):
        update_tracking(cfg, strict=True)
    assert path.read_bytes() == before

    monkeypatch.undo()
    write_tracking(cfg)
    assert [r["Run / cycle id"] for r in _sheet(cfg, "Runs")] == ["20250301T090000Z", "20250302T090000Z"]  # never stale


def test_a_cycle_is_one_row_from_its_steps(run_project):
    """The nightly cycle logs one line per step (``leadscoring.loop.cycle``): one row per cycle."""
    cfg, _ = run_project
    log = cfg.path("docs_dir") / "run_log.jsonl"
    steps = [
        ("pull", "ok", "read 40 changes", {"read": 40}),
        (
            "retrain",
            "ok",
            "due (30 new outcomes); challenger promoted",
            {"promoted": True, "challenger": {"roc_auc": 0.81, "brier": 0.17}, "archived": str(cfg.root / "04_Modelos" / "v")},
        ),
        ("rescore", "ok", "rescored 12 of 300 open leads", {"rescored": 12, "open_leads": 300}),
        ("push", "failed", "the CRM answered 503", {"error": "CrmError"}),
        ("monitoring", "ok", "drift table written", {}),
        ("cycle", "failed", "", {}),
    ]
    for step, status, summary, figures in steps:
        line = {"cycle": "20250305T020000Z-3fa9c1", "step": step, "status": status, "at": "2025-03-05T02:01:00+00:00"}
        append_json_line({**line, "seconds": 61.0, "summary": summary, "figures": figures}, log)
    update_tracking(cfg, strict=True)
    (row,) = _sheet(cfg, "Runs")
    assert row["Kind"] == "Cycle" and row["Status"] == "failed" and row["Time (UTC)"] == datetime(2025, 3, 5, 2)
    assert row["Leads scored"] == 12 and row["ROC-AUC"] == pytest.approx(0.81) and row["Changed what is in service"] == "Yes"
    assert (
        row["Decision"] == "retrain: due (30 new outcomes); challenger promoted"
        and row["Replaced set archived in"] == "04_Modelos/v"
    )
    assert "push failed" in row["Details"] and "push: the CRM answered 503" in row["Details"]


# -- what the pipeline learned, retraining and rollback ------------------------------------------


@pytest.fixture()
def model_project(tmp_path, small_models, leads, sample):
    """A project with the small real models in service, notebook 06's products for its
    configured variables, and 400 new outcomes (ids and outcome; features separately)."""
    cfg = load_config(write_project(tmp_path))
    d = cfg.data
    shutil.copytree(small_models, cfg.path("models_dir"))
    variables = [*d.columns.all, *cfg.features.sources]
    results = cfg.path("results_dir")
    results.mkdir(parents=True)
    selection = [
        {"variable": v, "information_value": i / 100, "keep": i % 3 != 0, "reason": "informative" if i % 3 else f"why {v}"}
        for i, v in enumerate(variables)
    ]
    keys = ["variable", "information_value", "keep", "reason"]
    (results / "variable_selection.csv").write_text(
        "\n".join([",".join(keys), *(",".join(str(r[k]) for k in keys) for r in selection)]) + "\n"
    )
    audit = ["variable,single_variable_auc,verdict,reason,allowed"]
    audit += [
        f"{v},{0.6 + i / 100:.2f},{'review' if v in d.post_contact else 'ok'},reason {v},True" for i, v in enumerate(d.columns.all)
    ]
    (results / "leakage_audit.csv").write_text("\n".join(audit) + "\n")
    chosen = {"selected": [r["variable"] for r in selection if r["keep"]], "dropped": {}}
    (results / cfg.features.selection_file).write_text(json.dumps(chosen))
    new = leads[~leads[d.id_column].isin(sample[d.id_column])].head(400)
    feats, outcomes = tmp_path / "new_leads.csv", tmp_path / "outcomes.csv"
    new.drop(columns=d.target_column).to_csv(feats, sep=";", index=False)
    new[[d.id_column, d.target_column]].to_csv(outcomes, sep=";", index=False)
    return cfg, selection, outcomes, feats


def test_transformations_show_what_the_model_in_service_learned(model_project):
    cfg, selection, _, _ = model_project
    d, style = cfg.data, cfg.report.number_style
    write_tracking(cfg)
    rows = {r["Variable"]: r for r in _sheet(cfg, "Transformations")}
    assert set(rows) == {d.id_column, d.target_column, *d.columns.all, *cfg.features.sources}
    steps = fitted_steps(load_model(cfg.path("models_dir") / SCORE_MODEL)[0])
    cleaner, encoder = steps["clean"], steps["encode"]
    for var in d.columns.numeric:
        lo, hi = cleaner.clip_[var]
        assert f"clipped to [{number(lo, style)}, {number(hi, style)}]" in rows[var]["Cleaning (learned in training)"]
        assert f"missing → {number(encoder.median_[var], style)}" in rows[var]["Encoding (learned in training)"]
        assert rows[var]["Role"] == "numeric input"
    for var in d.columns.categorical:
        assert f"one-hot over {len(encoder.categories_[var])} levels" in rows[var]["Encoding (learned in training)"]
    for var in d.columns.yes_no:
        assert rows[var]["Role"] == "yes/no input"
        expected = "not encoded: constant in training" if var in cleaner.constant_ else "1 / 0, missing → 0"
        assert rows[var]["Encoding (learned in training)"] == expected
    for r in selection:
        row = rows[r["variable"]]
        assert row["Selection"] == ("kept" if r["keep"] else "dropped") and row["Selection reason"] == r["reason"]
        assert row["Information value"] == pytest.approx(r["information_value"])
    for var in d.columns.all:
        assert rows[var]["Leakage audit"] == ("review" if var in d.post_contact else "ok")
        assert rows[var]["Known only after the sales contact"] == ("Yes" if var in d.post_contact else "No")
    for var in cfg.features.sources:
        assert rows[var]["Role"].startswith("derived: ")
    assert rows[d.id_column]["In the scoring model"] == "No"


def test_retrain_and_rollback_rewrite_the_workbook(model_project):
    cfg, _, outcomes, feats = model_project
    write_tracking(cfg)
    champion = read_manifest(cfg.path("models_dir") / SCORE_MODEL)["sha256"]
    result = retrain(cfg, outcomes, feats, tolerance=1.0)  # tolerance 1: always promoted
    (row,) = _sheet(cfg, "Runs")
    challenger = read_manifest(cfg.path("models_dir") / SCORE_MODEL)
    assert row["Kind"] == "Retrain" and row["Changed what is in service"] == "Yes" and row["Status"] == "ok"
    assert row["ROC-AUC"] == pytest.approx(result.challenger["roc_auc"]) and row["Brier score"] == pytest.approx(
        result.challenger["brier"]
    )
    assert row["Scoring model (SHA-256)"] == challenger["sha256"][:12]
    assert row["Training data fingerprint"] == challenger["data_fingerprint"][:12]
    assert row["Training rows"] == challenger["training_rows"]
    assert row["Decision"].startswith("challenger promoted") and row["Replaced set archived in"].startswith("04_Modelos/versions/")
    models = _sheet(cfg, "Models")
    assert [(m["SHA-256"], m["In service"], m["Made by"]) for m in models] == [
        (champion[:12], "No", "production run"),
        (challenger["sha256"][:12], "Yes", "retrain (challenger promoted)"),
    ]
    assert models[1]["Retrained from"] == champion[:12] and models[1]["ROC-AUC"] == pytest.approx(result.challenger["roc_auc"])

    rollback(cfg)
    runs = _sheet(cfg, "Runs")
    assert [r["Kind"] for r in runs] == ["Retrain", "Rollback"]
    assert runs[1]["Scoring model (SHA-256)"] == champion[:12] and runs[1]["Decision"].startswith("restored the archived set")
    in_service = [m["SHA-256"] for m in _sheet(cfg, "Models") if m["In service"] != "No"]
    assert champion[:12] in in_service


def test_odd_run_log_lines_never_keep_the_workbook_from_being_rewritten(run_project):
    """A field of another type (edited by hand, written by another tool) or bytes that are not
    UTF-8: that line is shown as is (or left out), and every other row is written."""
    cfg, _ = run_project
    run_pipeline(cfg, progress=False, run_id="20250301T090000Z")
    log = cfg.path("docs_dir") / "run_log.jsonl"
    append_json_line({"run_id": "20250303T090000Z", "status": "ok", "metrics": "n/a"}, log)
    append_json_line({"cycle": "20250304T020000Z-0a1b2c", "step": "retrain", "status": "ok", "figures": "none"}, log)
    append_json_line({"event": "retrain", "at": "2025-03-05T02:00:00+00:00", "champion": ["x"]}, log)
    with open(log, "ab") as fh:
        fh.write(b'{"event": "note", "text": "caf\xe9"}\n')
    update_tracking(cfg, strict=True)
    rows = _sheet(cfg, "Runs")
    assert rows[0]["Run / cycle id"] == "20250301T090000Z" and rows[0]["Kind"] == "Production run"
    odd = rows[1:]
    assert [r["Kind"] for r in odd] == ["unreadable"] * 3  # the non-UTF-8 line is left out
    assert '"metrics": "n/a"' in odd[0]["Details"] and '"figures": "none"' in odd[1]["Details"]
