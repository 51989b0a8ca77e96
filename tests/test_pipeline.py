"""End to end: the papermill production run on a stratified sample of the shipped data,
in a temporary project so the repository's own products are never touched."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from leadscoring.config import load_config
from leadscoring.run import QUICK_PARAMETERS, RunFailed, run_pipeline
from leadscoring.serving.history import history_folder, read_history

from .browser import page_problems, pdf_pages, print_pdf, requires_chromium, screenshot
from .conftest import RAW, write_project

pytestmark = pytest.mark.slow


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    cfg = load_config(write_project(root))
    result = run_pipeline(cfg, dict(QUICK_PARAMETERS), progress=False)
    return cfg, result


def test_run_executes_ten_notebooks_without_errors(project):
    cfg, result = project
    assert result.status == "ok"
    assert [n.name[:2] for n in result.notebooks] == [f"{i:02d}" for i in range(1, 11)]
    latest = cfg.path("results_dir") / "latest"
    executed = sorted((latest / "notebooks").glob("*.ipynb"))
    html = sorted((latest / "html").glob("*.html"))
    assert len(executed) == 10 and len(html) == 10
    for nb in executed:
        cells = json.loads(nb.read_text())["cells"]
        errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{nb.name} has error outputs"
        assert any("injected-parameters" in c["metadata"].get("tags", []) for c in cells)
    assert (latest / "RUN_ID").read_text().strip() == result.run_id


def test_consultant_reports_have_no_code(project):
    cfg, _ = project
    html = cfg.path("results_dir") / "latest" / "html"
    report = (html / "08_segmentation.html").read_text()
    code = (html / "07_ml_scoring.html").read_text()
    assert "leadscoring.notebook" not in report and "matplotlib.pyplot" not in report
    assert "INFO leadscoring" not in report  # log lines are for the data scientist's copy
    assert "leadscoring.notebook" in code
    assert "<img" in report


def test_products_models_and_scores(project):
    cfg, result = project
    models = cfg.path("models_dir")
    for name in ("lead_scoring_model", "segment_model", "rule_scorer"):
        assert (models / f"{name}.pkl").is_file() and (models / f"{name}.json").is_file()
    scores = pd.read_csv(cfg.path("results_dir") / "scores.csv")
    raw_ids = pd.read_csv(RAW, sep=";", usecols=["id"])["id"]
    assert scores["id"].tolist() == raw_ids.tolist()  # one row per lead, same order, nothing dropped
    assert {
        "probability",
        "score",
        "bucket",
        "recommended_action",
        "grade",
        "fit_score",
        "engagement_score",
        "segment",
        "reasons",
        "previous_score",
        "trend",
        "model_version",
        "scored_at",
    } <= set(scores.columns)
    assert scores["score"].between(0, 100).all() and scores["segment"].notna().all()
    payload = json.loads((cfg.path("results_dir") / "crm_payloads.jsonl").read_text().splitlines()[0])
    assert set(payload) == {"lead_id", "custom_fields"}
    assert set(payload["custom_fields"]) == {
        "predictive_score",
        "score_bucket",
        "recommended_action",
        "fit_score",
        "engagement_score",
        "grade",
        "reasons",
        "model_version",
        "scored_at",
        "trend",
    }
    # the run scored the training export (every outcome known): not leads for the score history
    assert result.history_rows is None and not history_folder(cfg.path("score_history")).exists()
    assert pd.read_parquet(cfg.path("results_dir") / "scores.inputs.parquet")["inputs"].notna().all()  # kept beside
    assert (cfg.path("docs_dir") / "model_card.md").read_text().startswith("# Model card")
    log = [json.loads(line) for line in (cfg.path("docs_dir") / "run_log.jsonl").read_text().splitlines()]
    assert log[-1]["status"] == "ok" and "validation_roc_auc" in log[-1]["metrics"]
    assert 0.75 < result.metrics["validation_roc_auc"] <= 1.0


def test_the_run_rewrote_the_tracking_workbook(project):
    """Never stale: the quick run's own row, the model it promoted, every configured variable
    with what the pipeline learned, read back with openpyxl."""
    import openpyxl

    from leadscoring.tracking import tracking_path

    cfg, result = project
    wb = openpyxl.load_workbook(tracking_path(cfg))

    def rows(name: str) -> list[dict]:
        values = list(wb[name].iter_rows(values_only=True))
        return [dict(zip(values[0], r, strict=True)) for r in values[1:]]

    (run,) = [r for r in rows("Runs") if r["Run / cycle id"] == result.run_id]
    assert run["Kind"] == "Production run" and run["Status"] == "ok" and run["Changed what is in service"] == "Yes"
    assert run["ROC-AUC"] == pytest.approx(result.metrics["validation_roc_auc"])
    manifest = json.loads((cfg.path("models_dir") / "lead_scoring_model.json").read_text())
    assert run["Scoring model (SHA-256)"] == manifest["sha256"][:12] and run["Training rows"] == manifest["training_rows"]
    (model,) = [m for m in rows("Models") if m["In service"] == "Yes"]
    assert model["SHA-256"] == manifest["sha256"][:12] and model["ROC-AUC"] == pytest.approx(manifest["validation"]["roc_auc"])
    variables = {r["Variable"]: r for r in rows("Transformations")}
    d = cfg.data
    assert set(d.columns.all) <= set(variables)
    assert all("clipped to [" in variables[v]["Cleaning (learned in training)"] for v in d.columns.numeric)
    assert {variables[v]["Selection"] for v in d.columns.all} <= {"kept", "dropped"}
    assert {variables[v]["Leakage audit"] for v in d.columns.all} <= {"ok", "review", "excluded"}
    assert {v for v, r in variables.items() if r["In the scoring model"] == "Yes"} == set(manifest["features"])


def test_cli_score_twice_is_identical_and_the_second_run_is_steady(project, tmp_path):
    cfg, _ = project
    leads = cfg.path("validation_dir") / "validation_leads.csv"
    outs = []
    for i in range(2):
        out = tmp_path / f"scores{i}.csv"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "leadscoring.cli",
                "--config",
                str(cfg.source),
                "score",
                "--input",
                str(leads),
                "--output",
                str(out),
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        assert "score history:" in done.stdout
        outs.append(pd.read_csv(out, dtype={"id": str}))
    first, second = outs
    assert (first["trend"] == "new").all()  # the run scored the training export: no previous score
    assert (second["trend"] == "steady").all() and (second["previous_score"] == second["score"]).all()  # same model
    history = read_history(cfg.path("score_history")).to_pandas()
    assert (history["lead_id"].isin(first["id"])).sum() == 2 * len(first)  # each score command
    same = [
        "id",
        "probability",
        "score",
        "bucket",
        "recommended_action",
        "grade",
        "fit_score",
        "engagement_score",
        "segment",
        "reasons",
        "model_version",
    ]
    pd.testing.assert_frame_equal(first[same], second[same])


def test_failing_notebook_keeps_previous_products(project, tmp_path):
    cfg, result = project
    scores = cfg.path("results_dir") / "scores.csv"
    model = cfg.path("models_dir") / "lead_scoring_model.pkl"
    before = (_sha(scores), _sha(model))
    bad = tmp_path / "bad.csv"
    bad.write_text("id;origen\n1;API\n")
    with pytest.raises(RunFailed, match=r"10_production_scoring.*missing required column"):
        run_pipeline(cfg, {"input_path": str(bad)}, only=["10"], progress=False)
    assert (_sha(scores), _sha(model)) == before
    assert (cfg.path("results_dir") / "latest" / "RUN_ID").read_text().strip() == result.run_id
    log = (cfg.path("docs_dir") / "run_log.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["status"] == "failed"


def test_unknown_parameter_refused(project):
    cfg, _ = project
    with pytest.raises(RunFailed, match="unknown parameter"):
        run_pipeline(cfg, {"smaple_size": 10}, only=["01"], progress=False)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda df: df.drop(columns=["ocupacion"]), "missing required column(s) ['ocupacion']"),
        (
            lambda df: df.assign(visitas_total=df["visitas_total"].mask(df.index == 3, "tres")),
            "column 'visitas_total' must be numeric but has text value(s): 'tres' (line 5)",
        ),
        (lambda df: df.assign(id=df["id"].mask(df.index == 7, df["id"].iloc[0])), "duplicate id(s)"),
    ],
)
def test_bad_export_stops_notebook_01_with_one_line(tmp_path, edit, message):
    bad = tmp_path / "export.csv"
    edit(pd.read_csv(RAW, sep=";", dtype=str, keep_default_na=False)).to_csv(bad, sep=";", index=False)
    cfg = load_config(write_project(tmp_path / "p", paths__raw_data=str(bad)))
    done = subprocess.run(
        [sys.executable, "-m", "leadscoring.cli", "--config", str(cfg.source), "run", "--only", "01", "--no-progress"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    err_lines = [line for line in done.stderr.splitlines() if line.startswith("leadscoring run: error")]
    assert len(err_lines) == 1 and "01_import.ipynb failed: LeadDataError" in err_lines[0]
    assert message in err_lines[0]


@requires_chromium
def test_client_summary_and_index_read_well_in_a_browser(project):
    """The acceptance of the client summary (issue #25): what a browser shows has no NaN, no
    scientific notation, no generated or configured column names, no index column, alt text on
    every image; the summary prints on at most two A4 pages. Screenshots stay in the run folder."""
    cfg, result = project
    results = cfg.path("results_dir")
    summary, index = results / "client_report.html", results / "latest" / "index.html"
    reports = [results / "latest" / "html" / f"{name}.html" for name in ("08_segmentation", "09_evaluation")]
    labels = cfg.model_data.labels
    for page in (summary, index, *reports):
        assert page_problems(page, labels) == [], page.name
    index_text = index.read_text(encoding="utf-8")
    assert 'href="../client_report.html"' in index_text and index_text.count('href="html/') == 10
    assert "validation ROC-AUC" in index_text and "segments" in index_text
    pages = pdf_pages(print_pdf(summary, result.run_dir / "client_report.pdf"))
    assert 1 <= pages <= 2, f"the client summary prints on {pages} A4 pages"
    for page in (summary, index, *reports):
        assert screenshot(page, result.run_dir / "screenshots" / f"{page.stem}.png").stat().st_size > 0
