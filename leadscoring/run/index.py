"""``05_Resultados/latest/index.html``: the front page of a promoted run.

One line per notebook rendered by the run (its title, a link to its HTML in ``html/`` and one
headline figure read from the run's own products: rows and conversion rate for 01, the
validation ROC-AUC for 07, the number of segments for 08, the top-30 % gain for 09...), then
the client summary and, when one exists, the monitoring report. A figure whose product is
missing or unreadable is left out, never guessed. Numbers are written by
:mod:`leadscoring.formats` in the configuration's number style.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from leadscoring.artifacts import CLIENT_REPORT, MONITORING_REPORT
from leadscoring.config import ProjectConfig
from leadscoring.formats import NumberStyle, count, number, percent
from leadscoring.io import write_text
from leadscoring.training.leakage import blocked_variables
from leadscoring.training.rules import rules_name_in

log = logging.getLogger(__name__)

INDEX = "index.html"

_CSS = """
body { font: 11pt/1.45 "DejaVu Sans", Arial, sans-serif; color: #222; max-width: 860px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 18pt; margin-bottom: 2px; }
.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; border-bottom: 1px solid #ddd; padding: 5px 8px; }
td.figure { color: #333; }
"""


def _metrics(results: Path) -> dict[str, Any]:
    path = results / "run_metrics.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _split_figure(cfg: ProjectConfig, style: NumberStyle) -> str:
    target = cfg.data.target_column
    parts = [pd.read_parquet(cfg.path(key) / name, columns=[target]) for key, name in _SPLITS]
    y = pd.to_numeric(pd.concat(parts)[target])
    return f"{count(len(y), style)} leads, {percent(y.mean(), style=style)} converted"


_SPLITS = (("work_dir", "work.parquet"), ("validation_dir", "validation.parquet"))


def _figures(cfg: ProjectConfig, style: NumberStyle) -> dict[str, Callable[[], str]]:
    """Per notebook number, how to read its headline figure from the run's products."""
    results = cfg.path("results_dir")

    def rows(name: str) -> int:
        return len(pd.read_csv(results / name))

    def selected() -> str:
        chosen = json.loads((results / cfg.features.selection_file).read_text(encoding="utf-8"))["selected"]
        return f"{count(len(chosen), style)} variables kept"

    def rules_auc() -> str:
        table = pd.read_csv(results / "validation_comparison.csv").set_index("model")
        name = rules_name_in(cfg.path("models_dir"))
        return f"{name}: validation ROC-AUC {number(table.loc[name, 'roc_auc'], style)}"

    def strongest() -> str:
        separation = pd.read_csv(results / "eda_variable_separation.csv")  # most separating first
        audit = results / "leakage_audit.csv"
        if audit.is_file():  # a field the audit kept out is no headline
            separation = separation[~separation["variable"].isin(blocked_variables(cfg, pd.read_csv(audit)))]
        first = separation.iloc[0]
        name = first["label"] if isinstance(first.get("label"), str) else first["variable"]
        return f"most separating variable: {name}"

    def leads_scored() -> str:
        return f"{count(pd.read_csv(results / 'bucket_summary.csv')['leads'].sum(), style)} leads scored"

    return {
        "01": lambda: _split_figure(cfg, style),
        "02": lambda: f"{count(rows('data_quality.csv'), style)} columns checked",
        "03": strongest,
        "04": lambda: f"{count(rows('feature_list.csv'), style)} model inputs after encoding",
        "05": rules_auc,
        "06": selected,
        "07": lambda: f"validation ROC-AUC {number(_metrics(results)['validation_roc_auc'], style)}",
        "08": lambda: f"{count(rows('segment_profiles.csv'), style)} segments",
        "09": lambda: (
            f"top 30 % of leads reach {percent(_metrics(results)['validation_gain_at_30pct'], style=style)} of conversions"
        ),
        "10": leads_scored,
    }


def _title(notebook: Path, stem: str) -> str:
    """The notebook's first heading (``# 09 · Evaluation``), else its file name."""
    try:
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
            if cell.get("cell_type") == "markdown":
                for line in "".join(cell.get("source", "")).splitlines():
                    if line.startswith("# "):
                        return line[2:].strip()
    except (OSError, ValueError, KeyError):
        pass
    return stem


def index_page(cfg: ProjectConfig, run_id: str, latest: Path, project_results: Path) -> str:
    """The index of ``latest`` (its ``html/`` and ``notebooks/``), with headline figures read
    from the products of ``cfg`` (the run's staged configuration) and links to the client
    summary and monitoring report in ``project_results`` (the folder holding ``latest``)."""
    style = cfg.report.number_style
    figures = _figures(cfg, style)
    rows = []
    for page in sorted((latest / "html").glob("*.html")):
        figure = ""
        read = figures.get(page.stem[:2])
        if read is not None:
            try:
                figure = read()
            except Exception as exc:  # a missing or unreadable product: the figure is left out
                log.info("index: no headline figure for %s (%s)", page.stem, exc)
        title = _title(latest / "notebooks" / f"{page.stem}.ipynb", page.stem)
        rows.append(
            f'<tr><td><a href="html/{html.escape(page.name)}">{html.escape(title)}</a></td>'
            f'<td class="figure">{html.escape(figure)}</td></tr>'
        )
    reports = []
    for name, text in ((CLIENT_REPORT, "Client summary (prints on A4)"), (MONITORING_REPORT, "Monitoring report")):
        if (cfg.path("results_dir") / name).is_file() or (project_results / name).is_file():
            reports.append(f'<li><a href="../{name}">{html.escape(text)}</a></li>')
    title = "Lead scoring: latest run" + (f" for {cfg.report.client_name}" if cfg.report.client_name else "")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='sub'>Run {html.escape(run_id)}</p>"
        + (f"<h2>Reports</h2><ul>{''.join(reports)}</ul>" if reports else "")
        + "<h2>Notebooks</h2><table><thead><tr><th>Notebook</th><th>Headline</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></body></html>\n"
    )


def write_index(cfg: ProjectConfig, run_id: str, latest: Path, project_results: Path) -> Path:
    """Write :func:`index_page` as ``latest/index.html`` (atomically); the path."""
    return write_text(index_page(cfg, run_id, latest, project_results), latest / INDEX)
