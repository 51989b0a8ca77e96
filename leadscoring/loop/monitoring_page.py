"""The monitoring report as people read it: ``monitoring.html``, one self-contained page (no
code; figures embedded) from a :class:`~leadscoring.loop.monitoring.MonitoringReport`: the
alerts first, then the notes on the data, the cohorts, expected against observed conversions,
ranking quality over time (model changes marked), conversion per grade and per bucket, drift,
and the A/B test. Tables go through :func:`leadscoring.notebook.tables.show` (configured labels,
``24 %``, no index) and numbers through :mod:`leadscoring.formats`, in the configuration's
number style.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from leadscoring.config import ProjectConfig
from leadscoring.formats import count, fixed, number, percent, use_style
from leadscoring.loop.monitoring import (
    AB_COUNTS,
    AB_PERCENT,
    DRIFT_COHORTS_SHOWN,
    PSI_WATCH,
    SCORE,
    MonitoringReport,
    ab_table,
    lift_sentence,
)
from leadscoring.notebook.client_report import embedded_png
from leadscoring.notebook.tables import show

_CSS = """
* { box-sizing: border-box; }
body { font: 10.5pt/1.45 "DejaVu Sans", Arial, sans-serif; color: #222; max-width: 1100px; margin: 20px auto; padding: 0 16px; }
h1 { font-size: 18pt; margin: 0 0 2px; }
h2 { font-size: 13pt; margin: 22px 0 6px; border-bottom: 1px solid #bbb; }
.sub { color: #555; margin: 0 0 10px; }
.alerts li { color: #8a1c1c; }
.ok { color: #245c2a; }
.headline { font-size: 11.5pt; background: #eef3fa; border-left: 4px solid #4C72B0; padding: 6px 10px; }
.notes li { color: #5a4a00; }
table { border-collapse: collapse; margin: 4px 0 10px; font-size: 9.5pt; }
th, td { border-bottom: 1px solid #ddd; padding: 2px 7px; vertical-align: top; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 1.5px solid #888; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 4px 0; }
.scroll { overflow-x: auto; }
figure { margin: 6px 0 12px; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: 9pt; color: #555; }
dt { font-weight: 600; } dd { margin: 0 0 6px 16px; }
"""

_CONVERTED = "#4C72B0"


def _table(df: pd.DataFrame, caption: str, labels: Mapping[str, str], **kwargs: Any) -> str:
    return '<div class="scroll">' + show(df, caption, labels, max_rows=None, **kwargs).to_html() + "</div>"


def _figure(fig: Any, alt: str, caption: str) -> str:
    return (
        f'<figure><img src="{embedded_png(fig)}" alt="{html.escape(alt)}"><figcaption>{html.escape(caption)}</figcaption></figure>'
    )


def _axes(width: float = 9.5, height: float = 3.2) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _shade_maturing(ax: Any, cohorts: pd.DataFrame) -> None:
    young = cohorts[~cohorts["complete"]]
    if len(young):
        ax.axvspan(young["start"].min(), cohorts["end"].max(), color="#999", alpha=0.12, lw=0, label="outcomes still coming in")


def _cohort_figure(report: MonitoringReport, fig: Any, ax: Any, ylabel: str, alt: str, caption: str) -> str:
    """A per-cohort plot finished the same way: the maturing cohorts shaded, the cohort axis,
    a grid, the legend outside, embedded with its alt text and caption."""
    _shade_maturing(ax, report.cohorts)
    ax.set(xlabel=f"{report.cohort} of first scoring", ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _figure(fig, alt, caption)


def _percent_axis(ax: Any) -> None:
    import matplotlib.ticker

    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _pos: percent(v)))


def _grade_figure(report: MonitoringReport, grades: pd.DataFrame) -> str:
    fig, ax = _axes()
    starts = dict(zip(report.cohorts["cohort"], report.cohorts["start"], strict=True))
    for grade in report.model.get("grades") or sorted(grades["grade"].unique()):
        part = grades[(grades["grade"] == grade) & (grades["counted"] > 0)]
        if len(part):
            ax.plot([starts[c] for c in part["cohort"]], part["conversion_rate"], marker="o", ms=3, label=f"grade {grade}")
    _percent_axis(ax)
    return _cohort_figure(
        report,
        fig,
        ax,
        "conversion rate",
        "Conversion rate of each grade's counted leads, per cohort of first scoring",
        "Conversion per grade over the cohorts: the grades should stay apart, best grade on top.",
    )


def _calibration_figure(report: MonitoringReport) -> str:
    c = report.cohorts[report.cohorts["counted"] > 0]
    fig, ax = _axes()
    err = np.vstack([c["expected"] - c["expected_low"], c["expected_high"] - c["expected"]])
    ax.errorbar(c["start"], c["expected"], yerr=err, fmt="o", ms=3, color="#999", capsize=2, label="expected, with its interval")
    ax.plot(c["start"], c["observed"], "o", ms=4, color=_CONVERTED, label="observed conversions")
    off = c[c["calibration"].isin(("above", "below"))]
    if len(off):
        ax.plot(off["start"], off["observed"], "o", ms=9, mfc="none", color="#C44E52", label="outside the interval")
    return _cohort_figure(
        report,
        fig,
        ax,
        "conversions of the counted leads",
        "Expected conversions (sum of probabilities, with interval) against observed conversions per cohort",
        "Expected against observed conversions: an observed point outside its interval means the probabilities are off.",
    )


def _auc_figure(report: MonitoringReport) -> str:
    c = report.cohorts[report.cohorts["roc_auc"].notna()]
    fig, ax = _axes()
    ax.plot(c["start"], c["roc_auc"], marker="o", ms=3, color=_CONVERTED, label="ROC-AUC of the cohort")
    ref = report.model.get("reference_auc")
    if ref is not None:
        ax.axhline(ref, color="#555", ls="--", lw=1, label="on " + report.model.get("reference_on", "the validation leads"))
        ax.axhline(ref - report.settings["auc_drop"], color="#C44E52", ls=":", lw=1, label="alert when the interval is below")
        ax.vlines(
            c["start"],
            c["roc_auc_low"],
            c["roc_auc_high"],
            color=_CONVERTED,
            lw=1,
            alpha=0.5,
            label=f"{percent(report.settings['confidence'])} interval",
        )
    changes = report.model_changes
    for i, r in enumerate(changes.itertuples()):
        if i == 0:
            continue
        when = pd.Timestamp(r.first_scored_at)
        ax.axvline(when, color="#DD8452", lw=1.2, label="a new model scores" if i == 1 else None)
        ax.annotate(
            str(r.version)[:7], (when, 1.0), xycoords=("data", "axes fraction"), fontsize=7, rotation=90, va="top", ha="right"
        )
    return _cohort_figure(
        report,
        fig,
        ax,
        "ROC-AUC",
        "ROC-AUC per cohort with the validation ROC-AUC and the dates new model versions started scoring",
        "Ranking quality over time (cohorts with enough outcomes of each class); "
        "vertical lines: a new model version starts scoring.",
    )


def _ranking_cell(row: Any) -> Any:
    return row.roc_auc if row.ranking == "measured" else "not enough outcomes yet"


def _cohort_section(report: MonitoringReport, labels: Mapping[str, str]) -> str:
    c = report.cohorts
    period = "week starting" if report.cohort == "week" else "month"
    table = pd.DataFrame(
        {
            period: c["cohort"],
            "leads": c["leads"],
            "with a final outcome": c["final_share"],
            "converted": c["converted"],
            "lost": c["lost"],
            "open, counted as lost": c["open_counted_as_lost"],
            "open": c["open"],
            "conversion rate": c["conversion_rate"],
            "ROC-AUC": [_ranking_cell(r) for r in c.itertuples()],
            "Brier score": c["brier"],
            "median days to outcome": [_days(d) for d in c["median_days_to_outcome"]],
            "model version": [", ".join(v) for v in c["model_versions"]],
        }
    )
    maturity = report.settings["maturity_days"]
    aged = (
        f"A lead still open {number(maturity)} days after its first scoring counts as lost; a younger one is open."
        if maturity is not None
        else "Open leads never count as lost (monitoring.maturity_days is not set)."
    )
    return (
        f"<p>Leads grouped by the {report.cohort} of their first scoring. {html.escape(aged)} The conversion rate, "
        "ROC-AUC and Brier score are measured on the counted leads (converted, lost, or open long enough to count as "
        "lost).</p>"
        + _table(
            table,
            "Each cohort: leads, outcomes so far, and how well the score ranked them",
            labels,
            percent_columns=["with a final outcome", "conversion rate"],
            count_columns=["leads", "converted", "lost", "open, counted as lost", "open"],
            text_columns=[period, "model version", "median days to outcome"],
        )
    )


def _days(days: object) -> str:
    """A number of days as a person reads it: one decimal, "under 0.1" for less, "—" unknown."""
    if days is None or pd.isna(days):
        return "—"
    return fixed(float(days), 1) if float(days) >= 0.05 else "under 0.1"


def _calibration_section(report: MonitoringReport, labels: Mapping[str, str]) -> str:
    c = report.cohorts
    verdict = {
        "within": "as expected",
        "above": "more than expected",
        "below": "fewer than expected",
        "maturing": "outcomes still coming in",
        "too few leads": "too few leads to tell",
        "no outcome yet": "no outcome yet",
    }
    period = "week starting" if report.cohort == "week" else "month"
    table = pd.DataFrame(
        {
            period: c["cohort"],
            "counted leads": c["counted"],
            "expected conversions": c["expected"],
            "interval from": c["expected_low"],
            "interval to": c["expected_high"],
            "observed conversions": c["observed"],
            "expected if every lead closes": c["expected_all"],
            "verdict": [verdict.get(v, v) for v in c["calibration"]],
        }
    )
    t = report.totals
    lead = ""
    if t.get("complete_cohorts"):
        lead = (
            f"<p>Over the {count(t['complete_cohorts'])} complete cohort(s): {count(t['complete_observed'])} conversions "
            f"observed, {number(t['complete_expected'])} expected.</p>"
        )
    return (
        lead
        + _calibration_figure(report)
        + _table(
            table,
            "Expected conversions (sum of the probabilities) against observed, "
            f"with a {percent(report.settings['confidence'])} interval",
            labels,
            percent_columns=[],
            count_columns=["counted leads", "observed conversions"],
            text_columns=[period, "verdict"],
        )
    )


def _pivot_section(
    report: MonitoringReport, frame: pd.DataFrame, name: str, order: Sequence[str], labels: Mapping[str, str]
) -> str:
    period = "week starting" if report.cohort == "week" else "month"
    wide = frame.pivot(index="cohort", columns=name, values="conversion_rate").reindex(columns=list(order))
    wide = wide.reindex(report.cohorts["cohort"]).reset_index().rename(columns={"cohort": period})
    wide.columns = [period, *(f"{name} {g}" for g in order)]
    return _table(
        wide,
        f"Conversion rate of the counted leads per {name}",
        labels,
        percent_columns=[f"{name} {g}" for g in order],
        text_columns=[period],
    )


def _drift_section(report: MonitoringReport, labels: Mapping[str, str]) -> str:
    d = report.drift
    if d.empty:
        return "<p>No drift measured (see the notes above).</p>"
    shown = sorted(set(d["cohort"]))[-DRIFT_COHORTS_SHOWN:]
    wide = d.pivot(index="variable", columns="cohort", values="psi").round(3)
    measured = d[d["psi"].notna()]  # a cohort too small for two PSI bins measures nothing
    highest = measured.loc[measured.groupby("variable")["psi"].idxmax()].set_index("variable")
    ranked = highest["psi"].sort_values(ascending=False, kind="stable").index
    order = [v for v in dict.fromkeys((SCORE, *ranked)) if v in wide.index]
    table = pd.DataFrame({"variable": ["the score (0-100)" if v == SCORE else v for v in order]})
    for cohort in shown:
        table[cohort] = wide.reindex(order)[cohort].to_numpy()
    table["highest"] = highest.reindex(order)["psi"].round(3).to_numpy()
    table["in cohort"] = highest.reindex(order)["cohort"].to_numpy()
    return (
        f"<p>Population stability index (PSI) of the period's leads (each once, at its first scoring in it) against "
        f"{html.escape(report.reference)}: "
        f"below {number(PSI_WATCH)} stable, from {number(PSI_WATCH)} to watch, above "
        f"{number(report.settings['psi_alert'])} an alert. The last {len(shown)} cohort(s), and each variable's highest "
        "(the score first, then the variables that moved most).</p>"
        + _table(
            table,
            "Drift of the score and of each input (PSI)",
            labels,
            percent_columns=[],
            text_columns=["variable", "in cohort"],
        )
    )


def _ab_section(report: MonitoringReport, labels: Mapping[str, str]) -> str:
    ab = report.ab
    if ab is None or ab.empty:
        return ""
    period = "week starting" if report.cohort == "week" else "month"
    conf = percent(report.settings["confidence"])
    said = lift_sentence(report.ab_total, report.settings["confidence"], int(report.settings["lift_min_outcomes"]))
    lead = f"<p class='headline'>{html.escape(said)}</p>"
    return lead + _table(
        ab_table(ab, period),
        f"Treatment (scored) against control (usual routine) per cohort, counted leads, {conf} intervals",
        labels,
        percent_columns=AB_PERCENT,
        count_columns=AB_COUNTS,
        text_columns=[period, "complete"],
    )


def monitoring_html(report: MonitoringReport, cfg: ProjectConfig) -> str:
    """The report as one self-contained HTML page (no code): alerts, notes, cohorts,
    expected against observed, ranking quality, grades and buckets, drift, A/B test."""
    labels = cfg.model_data.labels
    use_style(cfg.report.number_style)
    title = "Lead scoring: monitoring" + (f" for {cfg.report.client_name}" if cfg.report.client_name else "")
    t = report.totals
    sub = f"As of {report.now:%Y-%m-%d %H:%M} UTC"
    if t.get("leads"):
        sub += (
            f"; {count(t['leads'])} leads first scored from {t['scored_from'][:10]} to "
            f"{(pd.Timestamp(t['scored_to']) - pd.Timedelta(seconds=1)):%Y-%m-%d}, in {count(t['cohorts'])} {report.cohort}ly "
            f"cohorts ({count(t['complete_cohorts'])} complete); {percent(t['final_outcomes'] / t['leads'])} have a final outcome"
        )
    if report.model.get("version"):
        sub += f"; current model {report.model['version']}"
    parts = [f"<h1>{html.escape(title)}</h1><p class='sub'>{html.escape(sub)}.</p>"]
    if report.alerts:
        items = "".join(f"<li>{html.escape(a.message)}</li>" for a in report.alerts)
        parts.append(f"<h2>Alerts</h2><ul class='alerts'>{items}</ul>")
    else:
        parts.append("<h2>Alerts</h2><p class='ok'>No alert: no threshold is crossed.</p>")
    if report.notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
        parts.append(f"<h2>Notes on the data</h2><ul class='notes'>{items}</ul>")
    if not report.cohorts.empty:
        order = report.model.get("grades") or list(dict.fromkeys(report.grades["grade"]))
        parts += [
            "<h2>Cohorts</h2>" + _cohort_section(report, labels),
            "<h2>Expected against observed conversions</h2>" + _calibration_section(report, labels),
            "<h2>Ranking quality over time</h2>" + _auc_figure(report),
            "<h2>Conversion per grade and per bucket</h2>"
            + _grade_figure(report, report.grades)
            + _pivot_section(report, report.grades, "grade", order, labels)
            + _pivot_section(report, report.buckets, "bucket", [b.name for b in cfg.scoring.buckets], labels),
            "<h2>Drift against the training leads</h2>" + _drift_section(report, labels),
        ]
        ab = _ab_section(report, labels)
        if ab:
            parts.append("<h2>A/B test: treatment against control</h2>" + ab)
        elif not any("control group" in n for n in report.notes):
            parts.append("<h2>A/B test</h2><p>No lead of the A/B test has an outcome that counts yet.</p>")
    body = "".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>{body}</body></html>\n"
    )
