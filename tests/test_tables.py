"""Tables a person reads (leadscoring.notebook.tables): labels, percentages, counts, no
scientific notation, no index, captions; and names in generated text replaced by labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscoring.notebook.tables import count, header, label_names_in, number, percent, show

LABELS = {"tiempo_web": "Time on the website", "fuente": "Lead source"}


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (35490.0, "35,490"),
        (3.549e4, "35,490"),
        (1234567, "1,234,567"),
        (12.34, "12.3"),
        (1.5, "1.5"),
        (0.92291, "0.923"),
        (0.08276, "0.0828"),
        (-1.022e-08, "0"),
        (0.0004, "0.0004"),
        (float("nan"), "—"),
        (None, "—"),
    ],
)
def test_numbers_never_in_scientific_notation(value, shown):
    assert number(value) == shown


def test_percent_and_count():
    assert percent(0.2427) == "24 %"
    assert percent(0.004) == "0.4 %"
    assert percent(np.nan) == "—"
    assert count(35490.0) == "35,490"


def test_header_spells_out_names():
    assert header("roc_auc_mean") == "ROC-AUC mean"
    assert [header(n) for n in ("gain_at_30pct", "tp/fp/fn/tn", "threshold_ml")] == ["Gain at 30 %", "TP/FP/FN/TN", "Threshold ML"]
    html = show(pd.DataFrame({"precision": [0.0672], "average_precision": [0.62], "recall": [1.0]}), "t").to_html()
    assert ">7 %<" in html and ">100 %<" in html and ">0.62<" in html  # shares as %, a metric as a number
    assert header("tiempo_web", LABELS) == "Time on the website"


def test_show_formats_labels_shares_counts_and_hides_the_index():
    df = pd.DataFrame(
        {
            "variable": ["tiempo_web", "fuente", "fuente; tiempo_web"],
            "conversion_rate": [0.2427, np.nan, 0.5],
            "leads": [35490.0, 12.0, 3.0],
            "roc_auc": [0.92291, -1.022e-08, 0.5],
        }
    )
    html = show(df, "What the table is", LABELS).to_html()
    for expected in (
        "What the table is",
        "Time on the website",
        "Lead source; Time on the website",
        "24 %",
        "35,490",
        "0.923",
        "—",
    ):
        assert expected in html
    for forbidden in ("NaN", "e-08", "e+04", "0.2427", ">tiempo_web<", "row_heading"):
        assert forbidden not in html
    assert "Conversion rate" in html and "ROC-AUC" in html


def test_show_keeps_a_meaningful_index_when_asked():
    df = pd.DataFrame({"mean": [1.0, 2.0]}, index=["tiempo_web", "fuente"])
    html = show(df, "Stats", LABELS, index=True).to_html()
    assert "row_heading" in html and "Time on the website" in html


def test_labels_replace_names_in_generated_text_as_whole_words():
    text = "Excluded: tiempo_web, fuente. Kept: tiempo_web_2 and x.fuente."
    assert label_names_in(text, LABELS) == "Excluded: Time on the website, Lead source. Kept: tiempo_web_2 and x.fuente."
    assert label_names_in(text, {}) == text


def test_eda_figures_name_columns_by_their_labels():
    """Figures for the consultants' slides say "Time on the website", not the export's column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from leadscoring.notebook import plots

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"tiempo_web": rng.gamma(2, 100, 200), "visitas": rng.poisson(3, 200), "won": rng.integers(0, 2, 200)})
    fig = plots.numeric_by_target(df, "tiempo_web", "won", labels=LABELS)
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert ax.get_title() == "Time on the website: converted vs not" and ax.get_xlabel() == "Time on the website"
    assert legend == ["converted", "not converted"]
    heat = plots.correlation_heatmap(df[["tiempo_web", "visitas"]], labels=LABELS)
    assert [t.get_text() for t in heat.axes[0].get_xticklabels()] == ["Time on the website", "visitas"]
    plt.close("all")


def test_a_missingness_roc_auc_is_not_a_share():
    """The leakage audit's table: how well missingness ranks leads (0.51) is no percentage; the share missing is."""
    html = show(pd.DataFrame({"variable": ["fuente"], "missing_auc": [0.51], "missing_share": [0.2]}), "Audit", LABELS).to_html()
    assert "0.51" in html and "51 %" not in html and "20 %" in html


def test_conversions_reached_are_whole_leads():
    """Tied scores share their conversions in proportion, so a gains table's expected
    conversions can be 62.5: shown as whole leads, as a sales team counts them."""
    from leadscoring.training.evaluation import gains_table

    y = np.array([1, 0] * 25)
    table = gains_table(y, np.zeros(len(y)))  # every lead tied: 2.5 expected conversions per tenth
    assert table["conversions"].iloc[0] == 2.5
    html = show(table, "Gains").to_html()
    assert ">2.5<" not in html and ">2<" in html
