"""Shared fixtures: the shipped configuration, small samples of the shipped data, and
temporary projects whose products never touch the repository's folders."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from leadscoring.config import ProjectConfig, load_config
from leadscoring.ingest.load import read_leads
from leadscoring.ingest.split import stratified_sample

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "01_Documentos" / "config.yaml"
RAW = ROOT / "02_Datos" / "01_Originales" / "Leads.csv"

# A real BottleCRM for the CRM tests: the ``bottlecrm`` fixture, and those tests run last; a
# webhook receiver on loopback for the alert tests: the ``receiver`` fixture.
pytest_plugins = ["tests.bottlecrm", "tests.webhook"]


@pytest.fixture(scope="session")
def cfg(tmp_path_factory) -> ProjectConfig:
    """The shipped configuration, with its score history in a temporary folder: tests never
    read or append the project's own history (a ``make run`` may have written one). Its
    service does not append to that history (shared by the session's tests: one test's
    scorings would become another's previous scores); tests/test_inputs_log.py turns it on."""
    shipped = load_config(CONFIG)
    history = tmp_path_factory.mktemp("history") / "score_history.parquet"
    return shipped.model_copy(
        update={
            "paths": shipped.paths.model_copy(update={"score_history": str(history)}),
            "service": shipped.service.model_copy(update={"history_flush_seconds": 0}),
        }
    )


@pytest.fixture(scope="session")
def leads(cfg: ProjectConfig) -> pd.DataFrame:
    return read_leads(RAW, cfg)


@pytest.fixture(scope="session")
def sample(leads: pd.DataFrame, cfg: ProjectConfig) -> pd.DataFrame:
    return stratified_sample(leads, 800, cfg.data.target_column, 0)


@pytest.fixture()
def raw_text() -> str:
    return RAW.read_text(encoding="utf-8")


def write_project(tmp: Path, **overrides: object) -> Path:
    """A temporary project: config in tmp/01_Documentos whose inputs point at the
    repository (raw data, notebooks, rules) and whose products stay in ``tmp``."""
    conf = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    conf["paths"]["raw_data"] = str(RAW)
    conf["paths"]["notebooks_dir"] = str(ROOT / "03_Notebooks")
    conf["paths"]["rules_table"] = str(ROOT / "01_Documentos" / "scoring_rules.csv")
    for dotted, value in overrides.items():
        node = conf
        keys = dotted.split("__")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    (tmp / "01_Documentos").mkdir(parents=True, exist_ok=True)
    path = tmp / "01_Documentos" / "config.yaml"
    path.write_text(yaml.safe_dump(conf, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture()
def make_project(tmp_path: Path):
    def _make(**overrides: object) -> Path:
        return write_project(tmp_path, **overrides)

    return _make


@pytest.fixture(scope="session")
def small_models(cfg: ProjectConfig, sample: pd.DataFrame, tmp_path_factory) -> Path:
    """A calibrated XGBoost scoring model and a 3-segment model trained on 800 leads,
    saved with manifests in a temporary models folder."""
    from .small_models import save_small_models

    folder = tmp_path_factory.mktemp("models")
    save_small_models(cfg, sample, folder)
    return folder
