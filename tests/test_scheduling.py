"""The scheduling examples of docs/scheduling/ (cron, systemd service and timer, Prefect,
Airflow) run the cycle: each one's command, read out of the file (Prefect and Airflow are not
imported, their files are parsed), is run with ``--dry-run`` against a project and a recorded
CRM, and must succeed. Their placeholders (the project, the export, the environment file, the
project's environment) are replaced by the test's."""

from __future__ import annotations

import ast
import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from leadscoring.config import load_config

from .conftest import ROOT, write_project
from .loop_crm import LoopCrm, crm_section

DOCS = ROOT / "docs" / "scheduling"
PROJECT, EXPORT, ENV_FILE = "/srv/leadscoring", "/srv/exports/open_leads.csv", "/etc/leadscoring/crm.env"


@pytest.fixture()
def place(tmp_path, small_models, sample):
    """A project with models and an export of five open leads, a recorded CRM holding them, and
    the replacement of each placeholder of the examples."""
    crm = LoopCrm()
    cfg = load_config(write_project(tmp_path / "project", crm=crm_section(crm.url)))
    shutil.copytree(small_models, cfg.path("models_dir"))
    (cfg.root / ".venv" / "bin").mkdir(parents=True)
    (cfg.root / ".venv" / "bin" / "leadscoring").symlink_to(Path(sys.executable).with_name("leadscoring"))
    rows = sample.head(5).drop(columns="compra").astype(object).where(lambda d: d.notna(), "")
    export = tmp_path / "open_leads.csv"
    export.write_text(rows.to_csv(sep=";", index=False), encoding="utf-8")
    crm.add([str(i) for i in rows["id"]])
    env_file = tmp_path / "crm.env"
    env_file.write_text("LEADSCORING_CRM_TOKEN=not-used-by-this-crm\n", encoding="utf-8")
    yield {PROJECT: str(cfg.root), EXPORT: str(export), ENV_FILE: str(env_file)}, cfg
    crm.close()


def _placed(text: str, place: dict[str, str]) -> str:
    for placeholder, value in place.items():
        text = text.replace(placeholder, value)
    return text


def _dry_run(argv: list[str] | str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    if isinstance(argv, str):
        return subprocess.run(["/bin/sh", "-c", argv + " --dry-run"], capture_output=True, text=True, timeout=600, cwd=cwd)
    return subprocess.run([*argv, "--dry-run"], capture_output=True, text=True, timeout=600, cwd=cwd)


def _said_every_step(text: str) -> None:
    for step in ("pull", "retrain", "rescore", "push", "monitoring"):
        assert any(line.startswith(step) for line in text.splitlines()), (step, text)
    assert "dry-run" in text


@pytest.mark.slow
def test_the_cron_line_runs_the_cycle(place):
    places, cfg = place
    lines = [ln for ln in (DOCS / "leadscoring.cron").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(lines) == 1
    fields = lines[0].split(None, 5)
    assert fields[:5] == ["30", "2", "*", "*", "*"]
    command = _placed(fields[5], places).split(" >> ")[0]  # the output into the log file, shown here instead
    done = _dry_run(command)
    assert done.returncode == 0, done.stderr[-2000:]
    _said_every_step(done.stdout)


@pytest.mark.slow
def test_the_systemd_service_and_its_timer(place):
    places, cfg = place
    service = configparser.ConfigParser(interpolation=None, strict=False)
    service.optionxform = str  # type: ignore[assignment,method-assign]
    service.read_string(_placed((DOCS / "leadscoring-cycle.service").read_text(), places))
    unit = service["Service"]
    assert unit["Type"] == "oneshot" and unit["SuccessExitStatus"] == "75" and unit["EnvironmentFile"] == places[ENV_FILE]
    timer = configparser.ConfigParser(interpolation=None)
    timer.optionxform = str  # type: ignore[assignment,method-assign]
    timer.read_string((DOCS / "leadscoring-cycle.timer").read_text())
    assert timer["Timer"]["Persistent"] == "true" and timer["Timer"]["Unit"] == "leadscoring-cycle.service"
    assert timer["Timer"]["OnCalendar"]
    done = _dry_run(shlex.split(unit["ExecStart"]), cwd=unit["WorkingDirectory"])
    assert done.returncode == 0, done.stderr[-2000:]
    _said_every_step(done.stdout)


def _assigned(tree: ast.Module, name: str) -> object:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not assigned in the flow")


@pytest.mark.slow
def test_the_prefect_flow(place):
    places, cfg = place
    tree = ast.parse((DOCS / "prefect_flow.py").read_text())
    command = [_placed(part, places) for part in _assigned(tree, "COMMAND")]  # type: ignore[attr-defined]
    assert command[1] == "cycle" and _assigned(tree, "LOCKED") == 75
    done = _dry_run(command, cwd=_placed(str(_assigned(tree, "PROJECT")), places))
    assert done.returncode == 0, done.stderr[-2000:]
    _said_every_step(done.stdout)


@pytest.mark.slow
def test_the_airflow_dag(place):
    places, cfg = place
    tree = ast.parse((DOCS / "airflow_dag.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "BashOperator"]
    assert len(calls) == 1
    keywords = {k.arg: ast.literal_eval(k.value) for k in calls[0].keywords}
    assert keywords["skip_on_exit_code"] == 75
    done = _dry_run(_placed(str(keywords["bash_command"]), places))
    assert done.returncode == 0, done.stderr[-2000:]
    _said_every_step(done.stdout)
