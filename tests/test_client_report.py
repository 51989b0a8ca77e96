"""The client summary (leadscoring.notebook.client_report), the run's index page
(leadscoring.run.index) and the configured number style, on small hand-made products."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from leadscoring.config import ConfigError, load_config
from leadscoring.formats import NumberStyle, count, number, percent, use_style
from leadscoring.io import write_csv, write_json
from leadscoring.notebook.client_report import write_client_report
from leadscoring.notebook.tables import show
from leadscoring.run.index import index_page

from .browser import page_problems, requires_chromium


def test_numbers_follow_the_configured_style():
    comma = NumberStyle(decimal_mark=",", thousands_separator=".")
    assert (number(12.5, comma), count(35490, comma), percent(0.243, 1, comma)) == ("12,5", "35.490", "24,3 %")
    assert (number(3.549e4), number(float("nan")), number(None), percent(0.0042)) == ("35,490", "—", "—", "0.4 %")
    use_style(comma)
    try:
        html = show(pd.DataFrame({"leads": [35490], "mean_score": [12.5]}), "t").to_html()
    finally:
        use_style(NumberStyle())
    assert "35.490" in html and "12,5" in html


def test_the_report_section_is_strict(make_project):
    cfg = load_config(make_project(report={"client_name": "Acme", "decimal_mark": ",", "thousands_separator": " "}))
    assert cfg.report.number_style == NumberStyle(",", " ")
    for bad, message in (
        ({"decimal_mark": ",", "thousands_separator": ","}, "must differ"),
        ({"colour": "red"}, "report.colour"),
        ({"decimal_mark": ";"}, "report.decimal_mark"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_config(make_project(report=bad))


def _products(cfg) -> None:
    """The products the client summary and the index read, small and hand-made."""
    results, models = cfg.path("results_dir"), cfg.path("models_dir")
    gains = pd.DataFrame({"group": range(1, 11), "cum_leads_share": [i / 10 for i in range(1, 11)]})
    write_csv(
        pd.concat(
            [
                gains.assign(gain=[0.3, 0.55, 0.7, 0.8, 0.86, 0.9, 0.94, 0.97, 0.99, 1.0], strategy="ML score"),
                gains.assign(gain=[0.2, 0.4, 0.6, 0.7, 0.8, 0.86, 0.9, 0.95, 0.98, 1.0], strategy="marketing rules"),
            ]
        ),
        results / "evaluation_gains.csv",
    )
    write_csv(
        pd.DataFrame({"calls": [50, 100], "random": [18.9, 37.8], "ml": [47, 90], "threshold_ml": [97.0, 91.0]}),
        results / "evaluation_capacity.csv",
    )
    write_csv(
        pd.DataFrame(
            {
                "segment": [1, 2],
                "name": ["High-potential", "Low-potential"],
                "share": [0.4, 0.6],
                "conversion_rate": [0.6, 0.2],
                "distinguishing": ["high time on website (451 vs 154)", "lead source Chat (36% vs 19%)"],
                "recommendation": ["Route to sales fast.", "Automated marketing only."],
            }
        ),
        results / "segment_profiles.csv",
    )
    write_csv(
        pd.DataFrame({"variable": ["tiempo_en_site_total", "fuente", "unlabelled_x"], "mean_abs_contribution": [0.6, 0.3, 0.1]}),
        results / "feature_importance.csv",
    )
    write_csv(
        pd.DataFrame({"variable": ["ult_actividad", "origen"], "verdict": ["excluded", "ok"], "reason": ["status", "fine"]}),
        results / "leakage_audit.csv",
    )
    write_csv(
        pd.DataFrame(
            {
                "column": ["ambito"],
                "role": ["categorical"],
                "missing": [10],
                "placeholders": [5],
                "unknown_pct": [35.0],
                "distinct": [4],
                "constant": [False],
                "rare_levels": [0],
                "outliers": [0],
                "spelling_variants": [float("nan")],
                "max": [float("nan")],
            }
        ),
        results / "data_quality.csv",
    )
    write_json({"validation_roc_auc": 0.9229, "validation_gain_at_30pct": 0.7}, results / "run_metrics.json")
    write_json(
        {
            "training_rows": 5819,
            "validation_rows": 1455,
            "grades": {"names": ["A", "B"], "min_scores": [60, 0], "training_shares": [0.3, 0.7]},
        },
        models / "lead_scoring_model.json",
    )


def test_the_client_summary_is_built_from_the_products(make_project):
    cfg = load_config(make_project(report={"client_name": "Acme"}))
    _products(cfg)
    page = write_client_report(cfg).read_text(encoding="utf-8")
    assert "Lead scoring: summary for Acme" in page
    assert "Calling the top <b>30 %</b> of leads by score reaches <b>70 %</b>" in page
    assert "time on website" in page and "tiempo_en_site_total" not in page and "unlabelled_x" in page  # labels, else the name
    assert "Kept out of the score" in page and "last activity" in page and "ult_actividad" not in page
    assert "specialization: 35.0 % unknown (10 empty, 5 placeholder)" in page and "A/B test" in page and "control group" in page
    assert '<img src="data:image/png;base64,' in page and 'alt="Cumulative gains' in page
    assert "http://" not in page and "https://" not in page  # self-contained
    assert "@page { size: A4" in page and "page-break-inside: avoid" in page
    # grade A (60-100) gets what its leads' scores carry: HOT from 80, WARM below
    assert "Call immediately (HOT, scores 80-100); Nurture with sales email (WARM, scores 60-79)" in page


def test_the_client_summary_names_the_client_s_grades(make_project):
    cfg = load_config(make_project())
    _products(cfg)
    grades = {"names": ["Gold", "Silver"], "min_scores": [60, 0], "training_shares": [0.3, 0.7]}
    manifest = {"training_rows": 5819, "validation_rows": 1455, "grades": grades}
    write_json(manifest, cfg.path("models_dir") / "lead_scoring_model.json")
    page = write_client_report(cfg).read_text(encoding="utf-8")
    assert "If grade Gold holds more leads than the team can call" in page and "grade A" not in page


def test_the_client_summary_has_no_quality_caveat_about_a_field_kept_out_of_the_score(make_project):
    """Its caveats would say the field is 'kept, with Missing as its own level' while the
    leakage section says it is kept out."""
    cfg = load_config(make_project())
    _products(cfg)
    audit = pd.DataFrame({"variable": ["ambito", "origen"], "verdict": ["excluded", "ok"], "allowed": [False, False]})
    write_csv(audit, cfg.path("results_dir") / "leakage_audit.csv")
    page = write_client_report(cfg).read_text(encoding="utf-8")
    caveats = page.split("Data-quality caveats")[1]
    assert "35.0 % unknown" not in caveats and "specialization" in page.split("Kept out of the score")[1].split("</li>")[0]


def test_the_client_summary_never_says_an_allowed_field_is_kept_out(make_project):
    """A flagged field the configuration allows is in the score: the summary says so."""
    cfg = load_config(make_project())
    _products(cfg)
    audit = pd.DataFrame({"variable": ["ult_actividad", "origen"], "verdict": ["excluded", "review"], "allowed": [True, False]})
    write_csv(audit, cfg.path("results_dir") / "leakage_audit.csv")
    page = write_client_report(cfg).read_text(encoding="utf-8")
    to_confirm, kept_in = page.split("Kept out until the client confirms")[1], page.split("In the score although flagged")[1]
    assert "last activity" not in to_confirm.split("</li>")[0] and "last activity" in kept_in.split("</li>")[0]
    # a field marked for review on weak evidence is not said to show post-contact information
    assert "lead origin" in to_confirm.split("</li>")[0] and "Kept out of the score" not in page


@requires_chromium
def test_the_client_summary_reads_well_in_a_browser(make_project):
    cfg = load_config(make_project())
    _products(cfg)
    assert page_problems(write_client_report(cfg), cfg.model_data.labels) == []


def test_the_index_links_every_notebook_with_its_figure(make_project, tmp_path):
    cfg = load_config(make_project())
    _products(cfg)
    results = cfg.path("results_dir")
    latest = tmp_path / "latest"
    (latest / "html").mkdir(parents=True)
    (latest / "notebooks").mkdir()
    separation = pd.DataFrame({"variable": ["ambito", "fuente"], "label": ["specialization", "lead source"]})
    write_csv(separation, results / "eda_variable_separation.csv")  # the first one, the audit kept out:
    write_csv(pd.DataFrame({"variable": ["ambito"], "verdict": ["excluded"]}), results / "leakage_audit.csv")
    write_csv(pd.DataFrame({"feature": ["a", "b", "c"]}), results / "feature_list.csv")
    for stem in ("03_eda", "04_feature_engineering", "07_ml_scoring", "08_segmentation", "09_evaluation"):
        (latest / "html" / f"{stem}.html").write_text("<html></html>", encoding="utf-8")
    (latest / "notebooks" / "07_ml_scoring.ipynb").write_text(
        json.dumps({"cells": [{"cell_type": "markdown", "source": ["# 07 · ML scoring\n"]}]})
    )
    page = index_page(cfg, "RUN1", latest, results)
    assert '<a href="html/07_ml_scoring.html">07 · ML scoring</a>' in page and "validation ROC-AUC 0.923" in page
    assert "2 segments" in page and "top 30 % of leads reach 70 % of conversions" in page
    assert "most separating variable: lead source" in page and "3 model inputs after encoding" in page
    assert "client_report.html" not in page and "monitoring.html" not in page  # neither exists yet
    (results / "client_report.html").write_text("x", encoding="utf-8")
    (results / "monitoring.html").write_text("x", encoding="utf-8")
    page = index_page(cfg, "RUN1", latest, results)
    assert 'href="../client_report.html"' in page and 'href="../monitoring.html"' in page


def test_the_client_summary_carries_the_analysts_notes(make_project):
    """What the analyst wrote once in the notes file reaches the client summary (issue #25)."""
    cfg = load_config(make_project())
    _products(cfg)
    notes = cfg.path("analyst_notes")
    notes.parent.mkdir(parents=True, exist_ok=True)
    text = "## 08 Segmentation\nWe saw two look-alike segments, so we **kept three**.\n\n## 07 ML scoring\n"
    notes.write_text(text, encoding="utf-8")
    page = write_client_report(cfg).read_text(encoding="utf-8")
    assert "What the analyst saw and decided" in page and "<strong>kept three</strong>" in page
    assert "07 ML scoring" not in page  # an empty section shows nothing to the client


def test_the_client_summary_says_when_segments_overlap(make_project):
    cfg = load_config(make_project())
    _products(cfg)
    k_table = pd.DataFrame({"k": [2, 3], "silhouette": [0.1, 0.08], "stability_ari": [0.9, 0.8]})
    write_csv(k_table, cfg.path("results_dir") / "segment_k_selection.csv")
    assert "The segments overlap (silhouette 0.10, below 0.25)" in write_client_report(cfg).read_text(encoding="utf-8")
    write_csv(k_table.assign(silhouette=[0.4, 0.3]), cfg.path("results_dir") / "segment_k_selection.csv")
    assert "segments overlap" not in write_client_report(cfg).read_text(encoding="utf-8")


def test_rules_proposed_from_the_data_are_not_called_the_client_s(make_project):
    """Without a points table of the client's, the rule model is the one proposed from the data
    (notebook 05 records it in the rule scorer's manifest): the summary's capacity table names
    it so, never "marketing rules"."""
    cfg = load_config(make_project())
    _products(cfg)
    capacity = pd.DataFrame({"calls": [50, 100], "random": [18.9, 37.8], "rules": [30, 60], "ml": [47, 90]})
    write_csv(capacity, cfg.path("results_dir") / "evaluation_capacity.csv")
    for table, name in (("client", "marketing rules"), ("proposed", "rules proposed from the data")):
        write_json({"kind": "rule_scorer", "points_table": table}, cfg.path("models_dir") / "rule_scorer.json")
        page = write_client_report(cfg).read_text(encoding="utf-8")
        assert f">By {name}</th>" in page and (">By marketing rules</th>" in page) is (table == "client")
