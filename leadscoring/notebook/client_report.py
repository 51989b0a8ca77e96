"""The client summary: one to two printed A4 pages a consultant hands the client,
``05_Resultados/client_report.html`` (notebook 09 calls :func:`write_client_report`).

Built only from the run's own products (the evaluation, segment, importance, leakage and
data-quality tables, the run's metrics and the scoring model's manifest), every table
through :func:`leadscoring.notebook.tables.show` (labels, ``24 %``, no index, captions) and
every number through :mod:`leadscoring.formats`, in the configuration's number style. The
page is self-contained (styles inline, its one figure an embedded PNG with alt text) and
prints cleanly: A4, margins, no table cut by a page break.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from leadscoring.artifacts import CLIENT_REPORT
from leadscoring.config import Bucket, ProjectConfig
from leadscoring.config.notes import NOTE_SECTIONS, read_analyst_notes
from leadscoring.formats import count, number, percent, use_style
from leadscoring.ingest.quality import quality_findings
from leadscoring.io import write_text
from leadscoring.notebook.tables import show
from leadscoring.training.grades import grade_actions
from leadscoring.training.leakage import model_columns_after_audit
from leadscoring.training.rules import rules_name_in
from leadscoring.training.segmentation import overlap_caution

log = logging.getLogger(__name__)

#: The headline's share of leads called (a decile of the gains table).
HEADLINE_SHARE = 0.3
#: Rows shown at most in the drivers, segments and data-quality lists (two pages).
TOP_DRIVERS, TOP_SEGMENTS, TOP_FINDINGS = 8, 6, 6
#: The score's own strategy name in ``evaluation_gains.csv``.
ML_STRATEGY = "ML score"

_CSS = """
@page { size: A4; margin: 14mm 15mm; }
* { box-sizing: border-box; }
body { font: 9.5pt/1.35 "DejaVu Sans", Arial, sans-serif; color: #222; max-width: 180mm; margin: 0 auto; padding: 6mm 0; }
h1 { font-size: 15pt; margin: 0 0 1mm; }
h2 { font-size: 11pt; margin: 4mm 0 1.5mm; border-bottom: 1px solid #bbb; break-after: avoid; page-break-after: avoid; }
p, ul { margin: 1mm 0 2mm; }
ul { padding-left: 5mm; }
.sub { color: #555; margin-bottom: 3mm; }
.headline { font-size: 12pt; background: #eef3fa; border-left: 4px solid #4C72B0; padding: 2mm 3mm; }
table { border-collapse: collapse; width: 100%; margin: 1mm 0 2mm; font-size: 8.5pt;
        break-inside: avoid; page-break-inside: avoid; }
th, td { border-bottom: 1px solid #ddd; padding: 1px 5px; vertical-align: top; }
thead th { border-bottom: 1.5px solid #888; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 1mm 0; }
figure { margin: 1mm 0; break-inside: avoid; page-break-inside: avoid; text-align: center; }
figure img { max-width: 100%; max-height: 62mm; height: auto; }
figcaption { font-size: 8pt; color: #555; }
section { break-inside: auto; }
@media print { body { padding: 0; } a { color: inherit; text-decoration: none; } }
"""


def _read_csv(results: Path, name: str) -> pd.DataFrame | None:
    path = results / name
    if not path.is_file():
        log.warning("client summary: %s is missing, its section is left out", path)
        return None
    return pd.read_csv(path)


def _label(name: Any, labels: Mapping[str, str]) -> str:
    """A variable's configured label, else its name."""
    return labels.get(str(name), str(name))


def _table(df: pd.DataFrame, caption: str, labels: Mapping[str, str], **kwargs: Any) -> str:
    return show(df, caption, labels, **kwargs).to_html()


def embedded_png(fig: Any) -> str:
    """A matplotlib figure as a base64 PNG ``src`` for an ``<img>`` (the figure is closed): the
    reports' figures are embedded, so one HTML file is the whole report."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _gains_figure(gains: pd.DataFrame) -> str:
    """The cumulative gains curves (each strategy and random) as an embedded ``<figure>``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6.4, 2.6))
    ax.plot([0, 1], [0, 1], ls="--", color="#999", label="calling at random")
    for name, part in gains.groupby("strategy", sort=False):
        ax.plot([0, *part["cum_leads_share"]], [0, *part["gain"]], marker="o", ms=3, label=str(name))
    fmt = matplotlib.ticker.FuncFormatter(lambda v, _pos: percent(v))
    ax.xaxis.set_major_formatter(fmt)
    ax.yaxis.set_major_formatter(fmt)
    ax.set(xlabel="leads called, best scores first", ylabel="conversions reached", xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    alt = "Cumulative gains: share of conversions reached against the share of leads called, by strategy and at random"
    return (
        f'<figure><img src="{embedded_png(fig)}" alt="{html.escape(alt)}">'
        "<figcaption>Conversions reached as more leads are called, best scores first.</figcaption></figure>"
    )


def _headline(gains: pd.DataFrame | None) -> str:
    if gains is None:
        return ""
    ml = gains[gains["strategy"] == ML_STRATEGY] if "strategy" in gains else gains
    if ml.empty:
        return ""
    row = ml.iloc[(ml["cum_leads_share"] - HEADLINE_SHARE).abs().argmin()]
    share, gain = float(row["cum_leads_share"]), float(row["gain"])
    text = (
        f"Calling the top <b>{percent(share)}</b> of leads by score reaches "
        f"<b>{percent(gain)}</b> of the conversions, against "
        f"{percent(share)} when calling at random."
    )
    others = gains[(gains["strategy"] != ML_STRATEGY) & (gains["group"] == row["group"])] if "strategy" in gains else gains[:0]
    for r in others.itertuples():
        text += f" Ordering by the {html.escape(str(r.strategy))} reaches {percent(r.gain)}."
    return f'<p class="headline">{text}</p>' + _gains_figure(gains)


def _grades(manifest: Mapping[str, Any], choices: pd.DataFrame | None, labels: Mapping[str, str], buckets: Sequence[Bucket]) -> str:
    definition = manifest.get("grades") or {}
    names = list(definition.get("names") or [])
    if not names:
        return ""
    mins = list(definition.get("min_scores") or [None] * len(names))
    shares = list(definition.get("training_shares") or [float("nan")] * len(names))
    table = pd.DataFrame(
        {
            "grade": names,
            "from_score": mins,
            "share_of_leads": shares,
            "what_to_do": grade_actions(definition, buckets),  # the buckets' actions, as each score carries them
        }
    )
    out = _table(table, "Grades: what each should get (share of the training leads in each grade)", labels, text_columns=["grade"])
    if choices is not None and "choice" in choices:
        configured = choices[choices["choice"] == "configured"]
        if len(configured):
            r = configured.iloc[0]
            out += (
                f"<p>On the validation leads, grade {html.escape(names[0])} holds {count(r['calls'])} leads: "
                f"{percent(r['precision'])} of them convert, {percent(r['share_of_conversions'])} of all conversions.</p>"
            )
    return out


def _capacity(capacity: pd.DataFrame | None, labels: Mapping[str, str], rules: str) -> str:
    """The capacity table; ``rules``: the rule model's name (:func:`~leadscoring.training.rules.rules_name`)."""
    if capacity is None:
        return ""
    keep = {"calls": "calls", "random": "conversions_at_random", "rules": "by_" + rules.replace(" ", "_"), "ml": "by_the_score"}
    table = capacity[[c for c in keep if c in capacity]].rename(columns=keep)
    return _table(
        table,
        "Sales capacity: conversions reached with N calls (validation leads)",
        labels,
        percent_columns=[],
        count_columns=list(table.columns),
    )


def _segments(profiles: pd.DataFrame | None, k_table: pd.DataFrame | None, labels: Mapping[str, str]) -> str:
    if profiles is None or profiles.empty:
        return ""
    caution = overlap_caution(k_table, len(profiles))
    cols = {
        "name": "segment",
        "share": "share_of_leads",
        "conversion_rate": "conversion_rate",
        "distinguishing": "traits",
        "recommendation": "advice",
    }
    table = profiles[[c for c in cols if c in profiles]].rename(columns=cols).head(TOP_SEGMENTS)
    if "segment" in profiles and "segment" in table:
        table["segment"] = [f"{s} · {n}" for s, n in zip(profiles["segment"], table["segment"], strict=False)]
    return _table(
        table,
        "Segments: who the leads are, and what to do with each",
        labels,
        percent_columns=[c for c in ("share_of_leads", "conversion_rate") if c in table],
        text_columns=[c for c in ("segment", "traits", "advice") if c in table],
    ) + (f"<p>{html.escape(caution)}</p>" if caution else "")


def _drivers(importance: pd.DataFrame | None, labels: Mapping[str, str]) -> str:
    if importance is None or importance.empty or "variable" not in importance:
        return ""
    value = next((c for c in importance.columns if c != "variable"), None)
    if value is None:
        return ""
    top = importance.sort_values(value, ascending=False)
    total = float(top[value].sum()) or 1.0
    table = pd.DataFrame(
        {
            "variable": [_label(v, labels) for v in top["variable"].head(TOP_DRIVERS)],
            "share_of_influence": (top[value].head(TOP_DRIVERS) / total).to_numpy(),
        }
    )
    return _table(
        table, f"What drives the score: the {len(table)} strongest variables", labels, percent_columns=["share_of_influence"]
    )


def _leakage(audit: pd.DataFrame | None, labels: Mapping[str, str]) -> str:
    """What the leakage audit kept out of the score, and what is in it although flagged (the
    configuration allows it: ``data.allow_leaky`` or ``data.use_post_contact_fields``)."""
    if audit is None or "verdict" not in audit:
        return ""
    flagged = audit[audit["verdict"].ne("ok")]
    allowed = flagged["allowed"].astype(bool) if "allowed" in flagged else pd.Series(False, index=flagged.index)
    review = flagged["verdict"].eq("review")
    out = [_label(v, labels) for v in flagged.loc[~allowed & ~review, "variable"]]
    to_confirm = [_label(v, labels) for v in flagged.loc[~allowed & review, "variable"]]
    kept_in = [_label(v, labels) for v in flagged.loc[allowed, "variable"]]
    items = []
    if out:
        items.append(
            "<li><b>Kept out of the score</b> because their data shows information from after the sales contact: "
            + html.escape(", ".join(out))
            + ".</li>"
        )
    if to_confirm:
        items.append(
            "<li><b>Kept out until the client confirms</b> they are known before the sales contact (only weak signs, "
            "such as a name that reads like a status): " + html.escape(", ".join(to_confirm)) + ".</li>"
        )
    if not out and not to_confirm and not kept_in:
        items.append("<li>No field was kept out of the score: none showed information from after the sales contact.</li>")
    if kept_in:
        items.append(
            "<li><b>In the score although flagged</b>, because the configuration allows them: "
            + html.escape(", ".join(kept_in))
            + ". Confirm with the client that they are known before the sales contact.</li>"
        )
    return "<ul>" + "".join(items) + "</ul>"


def _quality(report: pd.DataFrame | None, audit: pd.DataFrame | None, cfg: ProjectConfig) -> str:
    """The data-quality findings about the fields the score may read (those the leakage audit
    kept out are the leakage section's)."""
    if report is None:
        return ""
    only = model_columns_after_audit(cfg, audit) if audit is not None and "verdict" in audit else None
    findings = quality_findings(report, cfg.model_data.labels, cfg.cleaning.clip_quantile, only)
    if not findings:
        return "<p>No data-quality problem worth a caveat.</p>"
    more = len(findings) - TOP_FINDINGS
    items = "".join(f"<li>{html.escape(f)}</li>" for f in findings[:TOP_FINDINGS])
    if more > 0:
        items += f"<li>… and {more} smaller finding(s) in the data-quality notebook (02).</li>"
    return f"<ul>{items}</ul>"


def _next_steps(capacity: pd.DataFrame | None, top_grade: str) -> str:
    """What the client does next; ``top_grade``: the name of the first grade (``scoring.grades``)."""
    calls = ""
    if capacity is not None and len(capacity):
        calls = f" (for example {count(capacity['calls'].iloc[min(2, len(capacity) - 1)])} calls per group)"
    return (
        "<ul>"
        "<li><b>Prove it in the field with an A/B test.</b> Split the incoming leads at random: a control group keeps "
        "the usual routine, a treatment group is called in score order with the same effort"
        f"{calls}. After a few weeks compare the two conversion rates with a confidence interval (the monitoring "
        "report, <code>leadscoring monitor</code>, does it every week); the figures above are a forecast until then.</li>"
        "<li><b>Retrain regularly.</b> The nightly <code>leadscoring cycle</code> feeds the CRM's outcomes back "
        "and retrains once enough have matured: the new model replaces the current one only if it is not worse, "
        "and the previous one can be restored.</li>"
        f"<li><b>Watch the grades.</b> If grade {html.escape(top_grade)} holds more leads than the team can call, "
        "raise its threshold "
        "(<code>scoring.grades</code> in the configuration).</li>"
        "</ul>"
    )


def _analyst_notes(cfg: ProjectConfig) -> str:
    """What this project's analyst wrote (``paths.analyst_notes``), one part per notebook with a
    note, as HTML; empty when nothing is written."""
    from nbconvert.filters import markdown2html

    notes = read_analyst_notes(cfg)
    parts = [
        f"<h3>{html.escape(title)}</h3>{markdown2html(notes[number])}"
        for number, (title, _) in NOTE_SECTIONS.items()
        if notes.get(number, "").strip()
    ]
    return "".join(parts)


def client_report(cfg: ProjectConfig) -> str:
    """The client summary of the products in ``cfg``'s results folder, as one HTML page
    (numbers in the configuration's style, made this process's default)."""
    results = cfg.path("results_dir")
    labels = cfg.model_data.labels
    use_style(cfg.report.number_style)  # the tables' numbers too
    manifest_file = cfg.path("models_dir") / "lead_scoring_model.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8")) if manifest_file.is_file() else {}
    rules = rules_name_in(cfg.path("models_dir"))
    metrics_file = results / "run_metrics.json"
    metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else {}
    gains = _read_csv(results, "evaluation_gains.csv")
    capacity = _read_csv(results, "evaluation_capacity.csv")

    title = "Lead scoring: summary" + (f" for {cfg.report.client_name}" if cfg.report.client_name else "")
    facts = []
    if manifest.get("training_rows"):
        facts.append(f"model trained on {count(manifest['training_rows'])} leads")
    if manifest.get("validation_rows"):
        facts.append(f"checked on {count(manifest['validation_rows'])} leads it never saw")
    if metrics.get("validation_roc_auc") is not None:
        facts.append(f"ranking quality (ROC-AUC) {number(metrics['validation_roc_auc'])} (0.5 = chance, 1 = perfect)")
    if manifest.get("created_at"):
        facts.append(f"built {str(manifest['created_at'])[:10]}")

    summary = "; ".join(facts)
    top_grade = next(iter((manifest.get("grades") or {}).get("names") or []), None) or cfg.scoring.grades.names[0]
    audit = _read_csv(results, "leakage_audit.csv")
    sections = [
        ("The headline", _headline(gains)),
        (
            "Grades and sales capacity",
            _grades(manifest, _read_csv(results, "evaluation_grades.csv"), labels, cfg.scoring.buckets)
            + _capacity(capacity, labels, rules),
        ),
        ("Segments", _segments(_read_csv(results, "segment_profiles.csv"), _read_csv(results, "segment_k_selection.csv"), labels)),
        ("What drives the score", _drivers(_read_csv(results, "feature_importance.csv"), labels)),
        ("Fields flagged by the leakage audit", _leakage(audit, labels)),
        ("Data-quality caveats", _quality(_read_csv(results, "data_quality.csv"), audit, cfg)),
        ("What the analyst saw and decided", _analyst_notes(cfg)),
        ("What to do next", _next_steps(capacity, top_grade)),
    ]
    body = "".join(f"<section><h2>{html.escape(h)}</h2>{content}</section>" for h, content in sections if content)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='sub'>{html.escape(summary[:1].upper() + summary[1:])}.</p>"
        f"{body}</body></html>\n"
    )


def write_client_report(cfg: ProjectConfig) -> Path:
    """Write :func:`client_report` to ``results_dir/client_report.html`` (atomically); the path."""
    dest = write_text(client_report(cfg), cfg.path("results_dir") / CLIENT_REPORT)
    log.info("client summary written to %s", dest)
    return dest
