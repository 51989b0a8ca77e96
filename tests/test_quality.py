import pandas as pd

from leadscoring.ingest.quality import conversion_by_bins, conversion_by_level, quality_findings, quality_report


def test_quality_report_on_shipped_data(leads, cfg):
    rep = quality_report(leads, cfg).set_index("column")
    assert rep.loc["ambito", "placeholders"] == 1465 and rep.loc["ambito", "missing"] == 1143
    assert rep.loc["ocupacion", "missing"] == 2147 and rep.loc["score_actividad", "missing"] == 3307
    assert bool(rep.loc["conociste_revista", "constant"]) and not bool(rep.loc["origen", "constant"])
    assert rep.loc["fuente", "spelling_variants"] == "Google/google"
    assert rep.loc["visitas_total", "max"] == 251 and rep.loc["visitas_total", "outliers"] > 0
    findings = "\n".join(quality_findings(rep.reset_index()))
    assert "conociste_revista: constant" in findings and "ambito: 35.9 % unknown" in findings
    assert "outliers beyond 3 IQR (max 251) - clipped to percentiles 1 and 99" in findings  # cleaning.clip_quantile
    assert "clipped to percentiles 5 and 95" in "\n".join(quality_findings(rep.reset_index(), clip_quantile=0.95))
    yes_no = cfg.data.columns.yes_no  # read as 1/0: no level is ever grouped
    assert (rep.loc[yes_no, "rare_levels"] == 0).all() and not any(f"{c}: 1 rare levels" in findings for c in yes_no)
    assert "(max 251) - kept" in "\n".join(quality_findings(rep.reset_index(), clip_quantile=1.0))


def test_conversion_tables(leads):
    t = conversion_by_level(leads, "origen", "compra").set_index("origen")
    assert t["leads"].sum() == len(leads)
    assert t.loc["Lead Add Form", "conversion_rate"] > 0.9
    b = conversion_by_bins(leads, "visitas_total", "compra")
    assert b["leads"].sum() == len(leads) and b["visitas_total"].iloc[-1] == "Missing"
    assert " to " in b["visitas_total"].iloc[0] and "(" not in b["visitas_total"].iloc[0]  # "0 to 2", not "(-0.001, 2.0]"


def test_placeholders_are_counted_as_the_cleaner_reads_them(cfg):
    """'select ' and 'SELECT' are the placeholder 'Select' for the cleaner, so for the report too."""
    placeholder = cfg.data.missing_values[0]
    column = cfg.data.columns.categorical[0]
    df = pd.DataFrame({column: [placeholder, placeholder.lower() + " ", placeholder.upper(), "Finance", None]})
    row = quality_report(df, cfg).set_index("column").loc[column]
    assert (row["placeholders"], row["missing"], row["distinct"]) == (3, 1, 1)
