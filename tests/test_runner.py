"""The production runner with a fake papermill: promotion rules, model-set archives,
failures and SIGTERM, reserved parameters, and (with a real kernel) the kernel warning.
Every test uses a temporary project; nothing touches the repository's products."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest

from leadscoring import cli
from leadscoring.artifacts import MODEL_SET, PROMOTION_FILE, list_model_sets, read_manifest, read_promotion, save_model
from leadscoring.config import ConfigError, ProjectConfig, load_config
from leadscoring.run import (
    QUICK_PARAMETERS,
    RunFailed,
    RunInterrupted,
    RunResult,
    declared_parameters,
    kernel_config,
    run_pipeline,
    runner,
)
from leadscoring.serving.history import ScoreHistory, history_folder, read_history

from .conftest import ROOT, write_project

MODEL_PRODUCTS = [f"models_dir/{name}" for name in MODEL_SET]


def _notebook(path: Path, params: str, body: str = "print('ok')") -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "leadscoring", "display_name": "Python (leadscoring)", "language": "python"}
    nbformat.write(nb, path)
    return path


def _fake_notebooks(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _notebook(
        folder / "01_prepare.ipynb",
        'config_path = None\noutput_root = None\nsample_size = None\nfast = False\nproducts = ["work_dir/work.txt"]',
    )
    _notebook(
        folder / "02_models.ipynb",
        "config_path = None\noutput_root = None\nfast = False\n"
        f"products = {MODEL_PRODUCTS + ['results_dir/run_metrics.json', 'docs_dir/model_card.md']!r}",
    )
    return folder


class FakePapermill:
    """Stands in for ``papermill.execute_notebook``: writes each notebook's declared products
    under ``output_root`` (models through save_model, so they carry manifests)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.fail: set[str] = set()
        self.skip_products: set[str] = set()
        self.on_call = None

    def __call__(self, input_path, output_path, parameters=None, **kw):
        nb = Path(input_path)
        self.calls.append((nb.stem, dict(parameters or {}), kw))
        shutil.copy(nb, output_path)
        if self.on_call:
            self.on_call(nb.stem)
        if nb.stem in self.fail:
            raise RuntimeError(f"boom in {nb.stem}")
        cfg = load_config(parameters["config_path"]).with_output_root(parameters["output_root"])
        for product in declared_parameters(nb)["products"]:
            if product in self.skip_products:
                continue
            key, _, rest = product.partition("/")
            dest = cfg.path(key) / rest
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.suffix == ".pkl":
                save_model({"notebook": nb.stem, "call": len(self.calls), "at": time.time()}, dest, kind=dest.stem)
            elif dest.name == "run_metrics.json":
                dest.write_text(json.dumps({"validation_roc_auc": 0.8}))
            else:
                dest.write_text(f"{nb.stem} call {len(self.calls)}\n")


def faked_run_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ProjectConfig, FakePapermill]:
    """A temporary project whose notebooks are faked: papermill, the kernel and the HTML
    rendering replaced, so a run writes its products without a kernel."""
    cfg = load_config(write_project(tmp_path / "p", paths__notebooks_dir=str(_fake_notebooks(tmp_path / "nbs"))))
    fake = FakePapermill()
    monkeypatch.setattr(papermill, "execute_notebook", fake)
    monkeypatch.setattr(runner, "ensure_kernel", lambda name: None)
    monkeypatch.setattr(runner, "render_html", lambda executed, dest, no_input: Path(dest).write_text("<html/>"))
    return cfg, fake


@pytest.fixture()
def project(tmp_path, monkeypatch):
    return faked_run_project(tmp_path, monkeypatch)


def _log(cfg) -> list[dict]:
    return [json.loads(line) for line in (cfg.path("docs_dir") / "run_log.jsonl").read_text().splitlines()]


def _sha(cfg, name: str) -> str:
    return read_manifest(cfg.path("models_dir") / name)["sha256"]


def test_trial_run_does_not_promote(project):
    cfg, fake = project
    res = run_pipeline(cfg, dict(QUICK_PARAMETERS), progress=False, promote=False)
    assert res.status == "ok" and not res.promoted
    assert fake.calls[0][1]["sample_size"] == 1500
    for name in MODEL_SET:  # the products are in the run's own folder only
        assert (res.products_dir / cfg.paths.models_dir / name).is_file()
        assert not (cfg.path("models_dir") / name).exists()
    assert not (cfg.path("results_dir") / "latest").exists()
    assert not (cfg.path("docs_dir") / "model_card.md").exists()
    assert _log(cfg)[-1]["status"] == "ok" and _log(cfg)[-1]["promoted"] is False


def test_trial_run_keeps_promoted_models_and_latest(project):
    cfg, _ = project
    first = run_pipeline(cfg, progress=False, run_id="r1")
    before = {n: _sha(cfg, n) for n in MODEL_SET}
    run_pipeline(cfg, dict(QUICK_PARAMETERS), progress=False, run_id="r2", promote=False)
    assert {n: _sha(cfg, n) for n in MODEL_SET} == before
    assert (cfg.path("results_dir") / "latest" / "RUN_ID").read_text().strip() == first.run_id
    assert list_model_sets(cfg.path("models_dir")) == []  # nothing replaced, nothing archived


def _fake_run(calls):
    def fake(cfg, params, **kw):
        calls.append((params, kw))
        return RunResult("rid", cfg.root / "05_Resultados" / "runs" / "rid", "ok", promoted=kw["promote"])

    return fake


@pytest.mark.parametrize(("flags", "promote"), [(["--quick"], False), (["--no-promote"], False), ([], True)])
def test_cli_run_promotes_only_full_runs(tmp_path, monkeypatch, capsys, flags, promote):
    calls = []
    monkeypatch.setattr("leadscoring.run.run_pipeline", _fake_run(calls))  # the name the CLI imports
    config = write_project(tmp_path)
    assert cli.main(["--config", str(config), "run", "--no-progress", *flags]) == 0
    params, kw = calls[0]
    assert kw["promote"] is promote
    assert (params == QUICK_PARAMETERS) is ("--quick" in flags)
    out = capsys.readouterr().out
    if promote:
        assert "promoted into the project" in out and "latest shows this run" in out
    else:
        assert "NOT promoted" in out and "products only in" in out


def test_cli_partial_run_does_not_claim_latest(tmp_path, monkeypatch, capsys):
    """`run --only 10` promotes its notebook's products but leaves latest/ on the last full run."""
    calls = []
    monkeypatch.setattr("leadscoring.run.run_pipeline", _fake_run(calls))
    config = write_project(tmp_path)
    assert cli.main(["--config", str(config), "run", "--no-progress", "--only", "10"]) == 0
    out = capsys.readouterr().out
    assert "promoted into the project" in out and "latest/ shows the last full run" in out and "shows this run" not in out


def test_the_run_says_what_its_model_measured_and_warns_near_chance(tmp_path):
    """A model that ranks leads little better than chance is said so after the run, naming the
    fields the leakage audit kept out when they hold the signal (an honest field kept out by
    mistake, such as the one strong behaviour of an export, goes in data.allow_leaky)."""
    run = RunResult("rid", tmp_path, "ok")
    assert run.headline() == []  # a partial run without notebook 07
    run.metrics = {"validation_roc_auc": 0.9244, "cv_roc_auc": 0.9181, "model_family": "xgboost"}
    assert run.headline() == ["scoring model (xgboost): validation ROC-AUC 0.924, cross-validation 0.918 (0.5 = chance)"]
    run.metrics["validation_roc_auc_without_allowed"] = 0.8731
    assert run.headline()[0].endswith("(0.5 = chance); 0.873 without the post-contact fields the configuration lets in")
    run.metrics = {"validation_roc_auc": 0.775, "validation_roc_auc_with_excluded": 0.974}
    run.metrics["kept_out_by_audit"] = ["Deal Value", "Rep"]
    assert run.headline()[1] == (  # a good model says what the audit kept out too, and what it would have faked
        "kept out by the leakage audit as known only after the sales contact: Deal Value, Rep (with them the same recipe "
        "would read 0.974); its evidence: 05_Resultados/leakage_audit.csv and the model card"
    )
    run.metrics["kept_out_for_review"] = ["Estado"]  # a name only: kept out, not said to be post-contact
    run.metrics["kept_out_by_audit"] = ["Deal Value", "Estado"]
    assert run.headline()[1].startswith(
        "kept out by the leakage audit as known only after the sales contact: Deal Value; until confirmed as known "
        "before the sales contact (data.allow_leaky): Estado (with them"
    )
    run.metrics = {"validation_roc_auc": 0.434, "validation_roc_auc_with_excluded": 0.854, "kept_out_by_audit": ["Pages Viewed"]}
    warning = run.headline()[1]
    assert warning.startswith("WARNING: the model ranks leads little better than chance (validation ROC-AUC 0.434)")
    assert "(Pages Viewed) it would read 0.854" in warning and "data.allow_leaky" in warning
    run.metrics["validation_roc_auc_with_excluded"] = 0.47  # the kept-out fields do not hold the signal either
    assert "Pages Viewed" not in run.headline()[2] and "kept out by the leakage audit" in run.headline()[1]


def test_promoting_a_new_model_set_archives_the_current_set(project):
    cfg, _ = project
    models = cfg.path("models_dir")
    run_pipeline(cfg, progress=False, run_id="r1")
    assert list_model_sets(models) == []  # nothing to archive in an empty project
    first = {n: read_manifest(models / n) for n in MODEL_SET}
    card = (cfg.path("docs_dir") / "model_card.md").read_text()
    second = run_pipeline(cfg, progress=False, run_id="r2")
    versions = list_model_sets(models)
    assert len(versions) == 1 and second.archived == versions[0]
    score = first["lead_scoring_model.pkl"]
    stamp = score["created_at"].replace(":", "").replace("+0000", "Z")
    assert versions[0].name == f"{stamp}_{score['sha256'][:12]}"
    for n in MODEL_SET:  # all three models and their manifests, as they were
        assert read_manifest(versions[0] / n)["sha256"] == first[n]["sha256"]
        assert (versions[0] / n).is_file() and (versions[0] / n).with_suffix(".json").is_file()
        assert _sha(cfg, n) != first[n]["sha256"]
    assert (versions[0] / "model_card.md").read_text() == card
    assert _log(cfg)[-1]["archived"] == str(versions[0])
    assert read_promotion(models)["models"] == {n: _sha(cfg, n) for n in MODEL_SET}  # the promotion is recorded

    (cfg.path("results_dir") / "run_metrics.json").write_text('{"validation_roc_auc": 0.9}')  # an earlier run's
    partial = run_pipeline(cfg, progress=False, only=["01"], run_id="r3")  # no new model staged: no archive
    assert partial.headline() == []  # the earlier run's model is not this run's figure
    assert len(list_model_sets(models)) == 1
    staged = cfg.path("results_dir") / "runs" / "r3" / "products" / cfg.paths.models_dir
    assert not (staged / "versions").exists() and not (staged / PROMOTION_FILE).exists()
    run_pipeline(cfg, progress=False, only=["02"], run_id="r4")  # partial run with a new model set: archived
    assert len(list_model_sets(models)) == 2
    assert read_promotion(models)["models"] == {n: _sha(cfg, n) for n in MODEL_SET}


def test_failure_removes_staging_and_keeps_executed_notebooks(project):
    cfg, fake = project
    run_pipeline(cfg, progress=False, run_id="r1")
    before = {n: _sha(cfg, n) for n in MODEL_SET}
    fake.fail = {"02_models"}
    with pytest.raises(RunFailed, match="02_models.ipynb failed: RuntimeError: boom in 02_models"):
        run_pipeline(cfg, progress=False, run_id="r2")
    run_dir = cfg.path("results_dir") / "runs" / "r2"
    assert not (run_dir / "products").exists()
    assert (run_dir / "notebooks" / "01_prepare.ipynb").is_file() and (run_dir / "notebooks" / "02_models.ipynb").is_file()
    assert {n: _sha(cfg, n) for n in MODEL_SET} == before
    assert _log(cfg)[-1]["status"] == "failed" and _log(cfg)[-1]["promoted"] is False

    fake.fail, fake.skip_products = set(), {"models_dir/rule_scorer.pkl"}
    with pytest.raises(RunFailed, match="did not write its product"):
        run_pipeline(cfg, progress=False, run_id="r3")
    assert not (cfg.path("results_dir") / "runs" / "r3" / "products").exists()


@pytest.mark.parametrize("name", ["products", "output_root", "config_path"])
def test_reserved_parameters_are_refused(project, name):
    cfg, fake = project
    value = [] if name == "products" else "/tmp/elsewhere"
    with pytest.raises(RunFailed, match=r"cannot be set: config_path, output_root, products are reserved") as err:
        run_pipeline(cfg, {name: value}, progress=False)
    assert name in str(err.value) and "\n" not in str(err.value)
    assert fake.calls == []


def _add_notes_cell(notebook: Path, text: str = "Notes come from the notes file.") -> str:
    """Insert a markdown cell tagged analyst-notes as the notebook's second cell; its text."""
    nb = nbformat.read(notebook, as_version=4)
    cell = nbformat.v4.new_markdown_cell(text)
    cell.metadata["tags"] = ["analyst-notes"]
    nb.cells.insert(1, cell)
    nbformat.write(nb, notebook)
    return notebook.read_text(encoding="utf-8")


def _notes_cell(notebook: Path) -> str:
    cells = [c for c in nbformat.read(notebook, as_version=4).cells if "analyst-notes" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    return cells[0].source


def test_the_run_fills_the_notes_cell_of_the_executed_copy_only(project):
    cfg, fake = project
    source = cfg.path("notebooks_dir") / "02_models.ipynb"
    before = _add_notes_cell(source)
    cfg.path("analyst_notes").write_text(
        "# Notes\n\n## 01 Prepare\n\nNot this one.\n\n## 02 Models\n<!-- hint -->\n"
        "We saw the forest overfit, so we chose the boosted model.\n\n### Threshold\n\nKept at 0.5.\n",
        encoding="utf-8",
    )
    res = run_pipeline(cfg, progress=False, run_id="r1")
    note = _notes_cell(res.run_dir / "notebooks" / "02_models.ipynb")
    assert note.startswith("## Analyst's notes\n\nWe saw the forest overfit, so we chose the boosted model.")
    assert "### Threshold\n\nKept at 0.5." in note and "Not this one" not in note and "hint" not in note
    assert _notes_cell(cfg.path("results_dir") / "latest" / "notebooks" / "02_models.ipynb") == note
    assert source.read_text(encoding="utf-8") == before  # the source notebook is never rewritten
    assert fake.calls[-1][2]["cwd"] == str(source.parent)  # still executed in the notebooks' folder


def test_a_missing_section_or_file_shows_where_to_write_the_note(project):
    cfg, _ = project
    notebooks = cfg.path("notebooks_dir")
    _add_notes_cell(notebooks / "01_prepare.ipynb")
    _add_notes_cell(notebooks / "02_models.ipynb")
    cfg.path("analyst_notes").write_text("## 01 Prepare\n\nWe saw few duplicates.\n\n## 02 Models\n\n<!-- hint only -->\n")
    res = run_pipeline(cfg, progress=False, run_id="r1")
    assert _notes_cell(res.run_dir / "notebooks" / "01_prepare.ipynb") == "## Analyst's notes\n\nWe saw few duplicates."
    placeholder = _notes_cell(res.run_dir / "notebooks" / "02_models.ipynb")
    assert placeholder.startswith("*") and placeholder.endswith("*")
    assert "`01_Documentos/analyst_notes.md`" in placeholder and '"## 02"' in placeholder

    cfg.path("analyst_notes").unlink()  # no notes file: not an error, every cell says where to write
    res = run_pipeline(cfg, progress=False, run_id="r2")
    assert res.status == "ok"
    assert '"## 01"' in _notes_cell(res.run_dir / "notebooks" / "01_prepare.ipynb")


def test_a_notes_file_with_two_sections_for_one_notebook_stops_the_run_before_it_starts(project):
    cfg, fake = project
    cfg.path("analyst_notes").write_text("## 02 Models\n\nA.\n\n## 2 Models again\n\nB.\n")
    with pytest.raises(ConfigError, match=r"analyst_notes.md line 5: a second section for notebook 02"):
        run_pipeline(cfg, progress=False, run_id="r1")
    assert fake.calls == [] and not (cfg.path("results_dir") / "runs" / "r1").exists()


class _Sentinel(Exception):
    pass


def test_sigterm_is_logged_as_interrupted_and_cleans_staging(project):
    cfg, fake = project

    def sentinel(signum, frame):  # stands for whatever handler the caller had (before the fix: reached)
        raise _Sentinel

    fake.on_call = lambda stem: (os.kill(os.getpid(), signal.SIGTERM), time.sleep(5)) if stem == "02_models" else None
    previous = signal.signal(signal.SIGTERM, sentinel)
    try:
        with pytest.raises(RunInterrupted, match="SIGTERM"):
            run_pipeline(cfg, progress=False, run_id="r1")
        assert signal.getsignal(signal.SIGTERM) is sentinel  # the caller's handler is back
    finally:
        signal.signal(signal.SIGTERM, previous)
    entry = _log(cfg)[-1]
    assert entry["status"] == "interrupted" and entry["notebooks"]["02_models"]["status"] == "interrupted"
    assert entry["notebooks"]["01_prepare"]["status"] == "ok"
    run_dir = cfg.path("results_dir") / "runs" / "r1"
    assert not (run_dir / "products").exists() and (run_dir / "notebooks" / "01_prepare.ipynb").is_file()
    assert not cfg.path("models_dir").exists() or not any(cfg.path("models_dir").iterdir())


def test_sigterm_during_promotion_lets_the_promotion_finish(project, monkeypatch):
    cfg, _ = project
    real = runner.copy_products

    def copy_with_signal(staging, root):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives during run promotion: recorded, acted on afterwards
        time.sleep(0.05)
        return real(staging, root)

    monkeypatch.setattr(runner, "copy_products", copy_with_signal)
    with pytest.raises(RunInterrupted, match="promotion was completed first"):
        run_pipeline(cfg, progress=False, run_id="r1")
    assert _log(cfg)[-1]["status"] == "ok" and _log(cfg)[-1]["promoted"] is True
    assert all((cfg.path("models_dir") / n).is_file() for n in MODEL_SET)
    assert (cfg.path("results_dir") / "latest" / "RUN_ID").read_text().strip() == "r1"


CHILD = """
import sys, time
import papermill
from pathlib import Path
import shutil

def slow(input_path, output_path, parameters=None, **kw):
    shutil.copy(input_path, output_path)
    out = Path(parameters["output_root"]) / "half_written.txt"
    out.write_text("x")
    print("started", flush=True)
    time.sleep(60)

papermill.execute_notebook = slow
from leadscoring.cli import main
sys.exit(main(["--config", sys.argv[1], "run", "--no-progress"]))
"""


def test_sigterm_from_outside_ends_the_run_cleanly(tmp_path):
    config = write_project(tmp_path / "p", paths__notebooks_dir=str(_fake_notebooks(tmp_path / "nbs")))
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(config)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "started"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "leadscoring run: interrupted: terminated by SIGTERM; nothing was promoted" in err and "Traceback" not in err
    cfg = load_config(config)
    entry = _log(cfg)[-1]
    assert entry["status"] == "interrupted" and entry["notebooks"]["01_prepare"]["status"] == "interrupted"
    run_dir = cfg.path("results_dir") / "runs" / entry["run_id"]
    assert (run_dir / "notebooks" / "01_prepare.ipynb").is_file() and not (run_dir / "products").exists()


def _run_one_real_notebook(tmp_path: Path, cell: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """A run of one tiny notebook (``cell`` after the parameters) in a real kernel, in a
    separate process (its stderr as a terminal would show it); the process and the config."""
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "01_tiny.ipynb", "config_path = None\noutput_root = None\nproducts = []", cell)
    config = write_project(tmp_path / "p", paths__notebooks_dir=str(nbs))
    code = textwrap.dedent(f"""
        from leadscoring.config import load_config
        from leadscoring.run import run_pipeline
        res = run_pipeline(load_config({str(config)!r}), progress=False, promote=False)
        print(res.status)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")
    return done, config


def test_kernel_runs_without_the_unencrypted_tcp_warning(tmp_path):
    """A real kernel (one tiny notebook): its stderr must not carry "Kernel is running over
    TCP without encryption"."""
    zmq = pytest.importorskip("zmq")
    if not zmq.has("curve"):
        pytest.skip("pyzmq without CurveZMQ: the kernel channel cannot be encrypted here")
    done, _ = _run_one_real_notebook(tmp_path, "x = 1 + 1\nprint(x)")
    assert "without encryption" not in done.stderr, done.stderr


def test_the_kernels_own_log_stays_off_the_runs_terminal(tmp_path):
    """A real kernel: what the kernel's machinery logs (as the "KeyboardInterrupt caught in
    kernel" error when jupyter_client interrupts it at shutdown) does not reach the run's
    stderr, while the cell's own output still reaches the executed notebook."""
    cell = "get_ipython().kernel.log.error('kernel machinery noise')\nprint('cell ran')"
    done, config = _run_one_real_notebook(tmp_path, cell)
    assert "kernel machinery noise" not in done.stderr, done.stderr
    executed = next((load_config(config).path("results_dir") / "runs").glob("*/notebooks/01_tiny.ipynb"))
    assert "cell ran" in executed.read_text()


def test_kernel_config_asks_for_encryption():
    zmq = pytest.importorskip("zmq")
    conf = kernel_config()
    expected = "auto" if zmq.has("curve") else None
    assert conf.get("KernelManager", {}).get("transport_encryption") == expected


class ScoringPapermill(FakePapermill):
    """Also writes a real ``scores.parquet`` (ids as text, a new ``scored_at`` per run)."""

    def __init__(self) -> None:
        super().__init__()
        self.runs = 0
        self.stamped = True

    def __call__(self, input_path, output_path, parameters=None, **kw):
        super().__call__(input_path, output_path, parameters, **kw)
        if Path(input_path).stem == "03_score":
            self.runs += 1
            cfg = load_config(parameters["config_path"]).with_output_root(parameters["output_root"])
            scores = pd.DataFrame({cfg.data.id_column: ["007", "008", "009"], "score": [10 * self.runs, 50, 90]})
            if self.stamped:
                scores = scores.assign(model_version="m1", scored_at=f"2025-03-0{self.runs}T09:00:00Z")
            scores.to_parquet(cfg.path("results_dir") / "scores.parquet")


@pytest.fixture()
def scoring_project(tmp_path, monkeypatch):
    nbs = _fake_notebooks(tmp_path / "nbs")
    _notebook(
        nbs / "03_score.ipynb",
        'config_path = None\noutput_root = None\ninput_path = None\nproducts = ["results_dir/scores.parquet"]',
    )
    cfg = load_config(write_project(tmp_path / "p", paths__notebooks_dir=str(nbs)))
    fake = ScoringPapermill()
    monkeypatch.setattr(papermill, "execute_notebook", fake)
    monkeypatch.setattr(runner, "ensure_kernel", lambda name: None)
    monkeypatch.setattr(runner, "render_html", lambda executed, dest, no_input: Path(dest).write_text("<html/>"))
    return cfg, fake


NEW_LEADS = {"input_path": "new_leads.csv"}  # a run scoring new leads, not the training export


def test_a_promoted_run_appends_its_scores_to_the_history(scoring_project):
    cfg, fake = scoring_project
    history = ScoreHistory(cfg.path("score_history"))
    run_pipeline(cfg, {**QUICK_PARAMETERS, **NEW_LEADS}, progress=False, run_id="quick", promote=False)
    run_pipeline(cfg, NEW_LEADS, progress=False, run_id="trial", promote=False)
    assert not history.path.exists() and "history_rows" not in _log(cfg)[-1]  # trial runs never touch it

    res = run_pipeline(cfg, NEW_LEADS, progress=False, run_id="r1")
    assert res.history_rows == 3 and _log(cfg)[-1]["history_rows"] == 3
    assert history.latest().to_dict() == {"007": 30, "008": 50, "009": 90}  # the third run of 03 (two trials before)

    def concurrent_score(stem):  # `leadscoring score` appends while a partial run is going on
        if stem == "03_score":
            history.append(["other"], [42], "m0", "2025-02-01T00:00:00Z")

    fake.on_call = concurrent_score
    res = run_pipeline(cfg, NEW_LEADS, progress=False, only=["03"], run_id="r2")
    assert res.history_rows == 3
    assert history.latest().to_dict() == {"007": 40, "008": 50, "009": 90, "other": 42}  # nothing lost
    assert not list(res.products_dir.rglob("score_history*"))  # the history is never staged nor promoted
    assert read_history(history.path).num_rows == 7


def test_a_run_scoring_the_training_export_leaves_the_history_alone(scoring_project):
    """Without input_path notebook 10 scores the training export, whose leads all have their
    outcome: in the history they would be leads scored today whose outcome never comes back
    (false monitoring alarms 60 days later, thousands of needless CRM reads each night)."""
    cfg, _ = scoring_project
    res = run_pipeline(cfg, progress=False, run_id="r1")
    assert res.promoted and res.history_rows is None and not history_folder(cfg.path("score_history")).exists()
    assert "history_rows" not in _log(cfg)[-1]


def test_a_promoted_run_without_stamped_scores_skips_the_history(scoring_project):
    cfg, fake = scoring_project
    fake.stamped = False  # scores written before they had model_version and scored_at
    res = run_pipeline(cfg, NEW_LEADS, progress=False, run_id="r1")
    assert res.promoted and res.status == "ok" and res.history_rows is None
    assert "history_rows" not in _log(cfg)[-1] and not history_folder(cfg.path("score_history")).exists()


def test_a_progress_bar_shows_its_last_state_in_the_html(tmp_path):
    """A cell's progress bar (carriage returns on stderr) reads as its final line in the
    rendered notebook, not as every state it went through."""
    import nbformat

    from leadscoring.run.kernel import render_html

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("fit()")
    states = "".join(f"\rCV: {p:3d}%|{'#' * (p // 10):10s}| {p // 10}/10" for p in range(0, 101, 10))
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text=states + "\n")]
    nb.cells.append(cell)
    nbformat.write(nb, tmp_path / "nb.ipynb")
    render_html(tmp_path / "nb.ipynb", tmp_path / "nb.html", no_input=False)
    html = (tmp_path / "nb.html").read_text(encoding="utf-8")
    assert "CV: 100%|##########| 10/10" in html and " 50%|" not in html
