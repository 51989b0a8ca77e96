"""Another client's export, by configuration alone: a generated foreign export (English
headers with spaces, comma separator, a yes/no target, one numeric column, a categorical
column with many levels or none at all, renamed buckets, no points table) runs through
the notebooks without any edit, and nothing in the products speaks of the shipped data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from leadscoring.config import load_config
from leadscoring.errors import LeadDataError
from leadscoring.ingest.quality import eda_findings, variable_separation
from leadscoring.ingest.split import check_minimum_data
from leadscoring.training.report import post_contact_caveats
from leadscoring.training.rules import RulesError, check_rules_against_config
from leadscoring.training.segmentation import channel_column, name_segments

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_WORDS = (
    "ult_actividad",
    "SMS Sent",
    "Had a Phone Conversation",
    "X Education",
    "ocupacion",
    "fuente",
    "score_actividad",
    "compra",
)


def foreign_export(n: int = 900, seed: int = 0, levels: int = 60) -> pd.DataFrame:
    """A small generated CRM export in another company's layout."""
    rng = np.random.default_rng(seed)
    visits = rng.poisson(4, n).astype(float)
    campaign = rng.integers(0, levels, n)
    email_ok = rng.random(n) < 0.6
    logit = -1.2 + 0.35 * (visits - 4) + 0.8 * email_ok + (campaign % 5 == 0) * 0.9
    converted = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "Lead Number": [f"L{i:05d}" for i in range(n)],
            "Total Visits": [f"{v:g}" if rng.random() > 0.05 else "" for v in visits],
            "Campaign Name": [f"Campaign {c:02d}" for c in campaign],
            "Email Opt In": np.where(email_ok, "yes", "no"),
            "Converted": np.where(converted, "yes", "no"),
            "Created On": pd.date_range("2024-01-01", periods=n, freq="6h").strftime("%Y-%m-%d %H:%M"),
        }
    )


def foreign_config(root: Path, raw: Path, categorical: bool = True) -> Path:
    conf = {
        "root": "..",
        "paths": {
            "raw_data": str(raw),
            "notebooks_dir": str(ROOT / "03_Notebooks"),
            "rules_table": "01_Documentos/points.csv",
        },  # does not exist: the proposal is used
        "data": {
            "separator": ",",
            "id_column": "Lead Number",
            "target_column": "Converted",
            "date_column": "Created On",
            "positive_value": "yes",
            "negative_value": "no",
            "yes_values": ["yes"],
            "no_values": ["no"],
            "columns": {
                "numeric": ["Total Visits"],
                "categorical": ["Campaign Name"] if categorical else [],
                "yes_no": ["Email Opt In"],
            },
            "labels": {"Total Visits": "visits"},
        },
        "scoring": {
            "buckets": [
                {"name": "Priority", "min_score": 70, "action": "Call today"},
                {"name": "Follow-up", "min_score": 30, "action": "Email sequence"},
                {"name": "Later", "min_score": 0, "action": "Newsletter"},
            ]
        },
        "segmentation": {"k_range": [2, 3], "seeds": [0, 1]},
        "run": {"report_notebooks": ["08_segmentation", "09_evaluation"]},
    }
    if not categorical:
        del conf["data"]["labels"]
    path = root / "01_Documentos" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(conf, sort_keys=False), encoding="utf-8")
    return path


def make_foreign_project(root: Path, categorical: bool = True) -> Path:
    raw = root / "02_Datos" / "01_Originales" / "export.csv"
    raw.parent.mkdir(parents=True, exist_ok=True)
    frame = foreign_export()
    if not categorical:
        frame = frame.drop(columns=["Campaign Name"])
    frame.to_csv(raw, index=False)
    return foreign_config(root, raw, categorical)


# --- unit checks (fast) -------------------------------------------------------------------


def test_minimum_data_names_the_counts(tmp_path):
    cfg = load_config(make_foreign_project(tmp_path))
    y = pd.Series([1] * 12 + [0] * 300)
    with pytest.raises(LeadDataError, match=r"12 conversions .* 300 non-conversions"):
        check_minimum_data(y, cfg)
    check_minimum_data(pd.Series([1] * 40 + [0] * 40), cfg)
    assert cfg.split.min_positives == 40 and cfg.split.min_negatives == 40


def test_rules_checked_against_the_configuration(tmp_path):
    cfg = load_config(make_foreign_project(tmp_path))
    ok = pd.DataFrame(
        {
            "variable": ["Total Visits", "Email Opt In"],
            "kind": ["range", "level"],
            "level": [None, "Yes"],
            "lower": [0, None],
            "upper": [5, None],
            "points": [5, 3],
        }
    )
    check_rules_against_config(ok, cfg)
    bad = pd.concat(
        [ok, pd.DataFrame({"variable": ["ocupacion"], "kind": ["level"], "level": ["Student"], "points": [10]})], ignore_index=True
    )
    with pytest.raises(RulesError, match=r"row 4: variable 'ocupacion' is not a configured column"):
        check_rules_against_config(bad, cfg)
    wrong_kind = ok.assign(kind=["level", "level"], level=["5", "Yes"])
    with pytest.raises(RulesError, match=r"row 2: .*'Total Visits' is numeric"):
        check_rules_against_config(wrong_kind, cfg)


def test_model_card_caveats_come_from_the_configuration(tmp_path, cfg):
    foreign = load_config(make_foreign_project(tmp_path))
    text = post_contact_caveats(foreign)
    assert "No field is configured as known only after the sales contact" in text
    assert not any(w in text for w in SHIPPED_WORDS)
    shipped = post_contact_caveats(cfg)
    assert "ult_actividad" in shipped and "used" in shipped and "SMS Sent" not in shipped


def test_channel_column_and_naming_cutoffs_are_configurable(tmp_path, cfg):
    foreign = load_config(make_foreign_project(tmp_path))
    assert channel_column(foreign) == "Campaign Name"
    assert channel_column(cfg) == "fuente"  # the shipped configuration names it
    bare = load_config(make_foreign_project(tmp_path / "bare", categorical=False))
    assert channel_column(bare) is None
    salutation_first = foreign.model_copy(deep=True)  # unset: the column named like a lead source, not the first one
    salutation_first.data.columns.categorical[:] = ["Anrede", "Branche", "Quelle"]
    assert channel_column(salutation_first) == "Quelle"
    salutation_first.data.columns.categorical[:] = ["Anrede", "Branche"]
    assert channel_column(salutation_first) == "Anrede"
    profile = pd.DataFrame({"segment": [1, 2], "conversion_rate": [0.5, 0.3], "distinguishing": ["high visits", ""]})
    names, advice = name_segments(profile, 0.4, top_bucket="Priority")
    assert names == {1: "Average: high visits", 2: "Average"}
    assert all(text.endswith("call those the model scores Priority.") for text in advice.values())  # the client's bucket
    names, _ = name_segments(profile, 0.4, high_ratio=1.2, low_ratio=0.8)
    assert names == {1: "High-potential: high visits", 2: "Low-potential"}


def test_eda_findings_are_computed_from_the_data(tmp_path):
    cfg = load_config(make_foreign_project(tmp_path))
    df = foreign_export()
    df["Converted"] = (df["Converted"] == "yes").astype(int)
    df["Total Visits"] = pd.to_numeric(df["Total Visits"])
    df["Email Opt In"] = (df["Email Opt In"] == "yes").astype(float)
    sep = variable_separation(df, cfg)
    assert set(sep["variable"]) == {"Total Visits", "Campaign Name", "Email Opt In"}
    findings = eda_findings(df, cfg)
    assert findings and any("visits" in f for f in findings)
    assert not any(w in " ".join(findings) for w in SHIPPED_WORDS)
    from leadscoring.formats import NumberStyle, use_style

    use_style(NumberStyle(",", "."))  # report: a team that writes 1.234,5 (as a notebook's setup does)
    try:
        spanish = eda_findings(df, cfg)[0]
    finally:
        use_style(NumberStyle())
    rate = f"{100 * df['Converted'].mean():.1f}".replace(".", ",")
    assert spanish == f"900 leads, base conversion rate {rate} %."

    # a number filled in only for converted leads (a deal's value): said so, not "hardly changes"
    df["Total Visits"] = df["Total Visits"].where(df["Converted"] == 1)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no correlation of a constant
        findings = eda_findings(df, cfg)
    won = int(df["Total Visits"].notna().sum())
    assert any(
        f.endswith(f"filled in only for leads that converted ({won} leads): a sign it is entered after the outcome.")
        for f in findings
    ), findings
    assert not any("hardly changes" in f and "visits" in f.lower() for f in findings)


# --- the notebooks on the foreign export (slow) -------------------------------------------
# All ten notebooks on a foreign export, with init's configuration: tests/test_init.py.


def products_text(folder: Path) -> str:
    """The text of a project's products (reports, tables, notebooks) under ``folder``."""
    parts = []
    for p in folder.rglob("*"):
        if p.is_file() and p.suffix in (".md", ".csv", ".json", ".ipynb") and p.stat().st_size < 5_000_000:
            parts.append(p.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)


@pytest.mark.slow
def test_foreign_export_without_categorical_column(tmp_path):
    from leadscoring.run import QUICK_PARAMETERS, run_pipeline

    cfg = load_config(make_foreign_project(tmp_path, categorical=False))
    only = ["01", "02", "03", "04", "05"]
    result = run_pipeline(cfg, {**QUICK_PARAMETERS, "sample_size": None}, only=only, progress=False, promote=False)
    assert result.status == "ok"


def test_validation_split_is_the_most_recent_leads_when_a_date_is_configured(tmp_path):
    from leadscoring.ingest.split import split_validation

    cfg = load_config(make_foreign_project(tmp_path))
    n = 200
    df = pd.DataFrame({"Converted": [1, 0] * (n // 2), "Created": pd.date_range("2024-01-01", periods=n, freq="D")[::-1]})
    dated = cfg.model_copy(update={"data": cfg.data.model_copy(update={"date_column": "Created"})})
    work, valid = split_validation(df, dated)
    assert len(valid) == 40 and valid["Created"].min() > work["Created"].max()
    work2, valid2 = split_validation(df, cfg)  # no date configured: stratified random split
    assert len(valid2) == 40 and valid2["Converted"].mean() == 0.5
