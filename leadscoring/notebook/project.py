"""Small helpers shared by the notebooks: configuration, logging, display, products."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from leadscoring.config import ProjectConfig, load_config
from leadscoring.formats import use_style


def setup(config_path: str | os.PathLike[str] | None = None, output_root: str | None = None) -> ProjectConfig:
    """Load the configuration (products under ``output_root`` during a production run),
    set logging, display options and the number style of tables (``report``), and create the
    product folders."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("matplotlib", "PIL", "fontTools"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    pd.set_option("display.max_columns", 50)
    pd.set_option("display.width", 160)
    pd.set_option("display.float_format", lambda v: f"{v:,.4g}")
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    cfg = load_config(config_path).with_output_root(output_root)
    use_style(cfg.report.number_style)
    for key in ("validation_dir", "work_dir", "models_dir", "results_dir", "docs_dir"):
        cfg.path(key).mkdir(parents=True, exist_ok=True)
    figures(cfg).mkdir(parents=True, exist_ok=True)
    return cfg


def figures(cfg: ProjectConfig) -> Path:
    """Folder for PNG figures."""
    return cfg.path("results_dir") / "figures"


def work_file(cfg: ProjectConfig) -> Path:
    return cfg.path("work_dir") / "work.parquet"


def new_lead_scores_file(cfg: ProjectConfig) -> Path:
    """The working split's out-of-fold scores (notebook 07, in ``work.parquet``'s order): how the
    model scores leads it never saw, what grade thresholds are learned on (notebooks 07 and 09)."""
    return cfg.path("work_dir") / "work_scores.parquet"


def validation_file(cfg: ProjectConfig) -> Path:
    return cfg.path("validation_dir") / "validation.parquet"


def read_work(cfg: ProjectConfig) -> pd.DataFrame:
    """The working split written by notebook 01."""
    return pd.read_parquet(work_file(cfg))


def read_validation(cfg: ProjectConfig) -> pd.DataFrame:
    """The validation split written by notebook 01 (touch once, in notebooks 07 and 09)."""
    return pd.read_parquet(validation_file(cfg))
