"""Leakage audit: fields filled in after the sales contact are excluded before any model
sees them (issue 11, item 2), on a generated foreign export and on the shipped data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedKFold

from leadscoring.config import ConfigError, DataConfig, PathsConfig, ProjectConfig, load_config
from leadscoring.training.leakage import (
    apply_audit,
    audit_summary,
    audited_features,
    leakage_audit,
    model_columns_after_audit,
    normalised_name,
    outcome_like_stems,
)

CV = StratifiedKFold(3, shuffle=True, random_state=0)


def foreign_export(n: int = 1500, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """An English CRM export: a status written after the call, the call's duration, a budget
    filled in mostly for buyers, and honest weak inputs."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    status = np.where(
        y == 1,
        np.where(rng.random(n) < 0.95, "Closed - Won", "Contacted"),
        np.where(rng.random(n) < 0.7, "Closed - Lost", "Contacted"),
    )
    duration = np.round(np.where(y == 1, rng.normal(300, 80, n), rng.normal(120, 80, n)).clip(0), 1)
    budget = np.round(rng.normal(5000, 1500, n), 0)
    budget_missing = np.where(y == 1, rng.random(n) < 0.05, rng.random(n) < 0.6)
    source = np.where(rng.random(n) < 0.5 + 0.15 * y, "Google", rng.choice(["Referral", "Direct", "Email"], n))
    visits = rng.poisson(3 + y, n).astype(float)
    X = pd.DataFrame(
        {
            "Lead Number": np.arange(n),
            "Lead Source": source,
            "Website Visits": visits,
            "Lead Status": status,
            "Call Duration": duration,
            "Budget": np.where(budget_missing, np.nan, budget),
        }
    )
    return X, pd.Series(y, name="Converted")


def foreign_config(tmp: Path, **data: object) -> ProjectConfig:
    settings = (
        dict(
            id_column="Lead Number",
            target_column="Converted",
            columns={"numeric": ["Website Visits", "Call Duration", "Budget"], "categorical": ["Lead Source", "Lead Status"]},
            labels={"Budget": "declared budget"},
            ratios={},
        )
        | data
    )
    ratios = settings.pop("ratios")
    return ProjectConfig(
        root=tmp, paths=PathsConfig(raw_data="export.csv"), data=DataConfig(**settings), features={"ratios": ratios}
    )


@pytest.fixture(scope="module")
def export() -> tuple[pd.DataFrame, pd.Series]:
    return foreign_export()


def verdicts(audit: pd.DataFrame) -> dict[str, str]:
    return dict(zip(audit["variable"], audit["verdict"], strict=True))


def test_foreign_export_status_and_call_duration_are_excluded(export, tmp_path):
    X, y = export
    audit = leakage_audit(X, y, foreign_config(tmp_path), CV)
    assert {"variable", "single_variable_auc", "missing_share", "verdict", "reason"} <= set(audit.columns)
    v = verdicts(audit)
    assert v["Lead Status"] == "excluded"
    assert v["Call Duration"] in ("excluded", "review")
    assert v["Call Duration"] == "excluded"  # strong alone and its name reads like a call field
    assert v["Website Visits"] == "ok" and v["Lead Source"] == "ok"
    assert v["Budget"] == "review" and "filled in" in audit.set_index("variable").loc["Budget", "reason"]
    status = audit.set_index("variable").loc["Lead Status"]
    assert status["single_variable_auc"] > 0.85 and "nearly always converts" in status["reason"]
    assert audit["verdict"].tolist() == sorted(audit["verdict"], key=["excluded", "review", "ok"].index)
    # Budget's weak evidence (review) keeps it out of the models until the configuration allows it
    assert model_columns_after_audit(foreign_config(tmp_path), audit) == ["Website Visits", "Lead Source"]
    allowed = foreign_config(tmp_path, allow_leaky=["Budget"])
    assert model_columns_after_audit(allowed, audit.assign(allowed=audit["variable"].eq("Budget"))) == [
        "Website Visits",
        "Budget",
        "Lead Source",
    ]


def test_allow_leaky_keeps_a_named_variable(export, tmp_path):
    X, y = export
    cfg = foreign_config(tmp_path, allow_leaky=["Call Duration"])
    audit = leakage_audit(X, y, cfg, CV).set_index("variable")
    assert audit.loc["Call Duration", "verdict"] == "excluded" and audit.loc["Call Duration", "allowed"]
    assert "data.allow_leaky" in audit.loc["Call Duration", "reason"]
    kept = model_columns_after_audit(cfg, audit.reset_index())
    assert "Call Duration" in kept and "Lead Status" not in kept


def test_allow_leaky_must_name_configured_columns(tmp_path):
    with pytest.raises(ValueError, match="allow_leaky"):
        foreign_config(tmp_path, allow_leaky=["Tags"])


def test_derived_features_of_an_excluded_column_are_dropped(export, tmp_path):
    X, y = export
    cfg = foreign_config(tmp_path, ratios={"duration_per_visit": ("Call Duration", "Website Visits")})
    audit = leakage_audit(X, y, cfg, CV)
    assert "duration_per_visit" not in audited_features(cfg, audit)
    decision = pd.DataFrame(
        {
            "variable": ["Website Visits", "Call Duration", "duration_per_visit", "Budget"],
            "keep": [True, True, True, True],
            "reason": ["informative"] * 4,
        }
    )
    out = apply_audit(decision, cfg, audit).set_index("variable")
    assert not out.loc["Call Duration", "keep"] and not out.loc["duration_per_visit", "keep"]
    assert not out.loc["Lead Status", "keep"]  # added although selection never saw it
    assert out.loc["Website Visits", "keep"] and "review" in out.loc["Budget", "reason"]


def test_a_post_outcome_field_is_excluded_even_when_nothing_else_predicts(tmp_path):
    """Only noise plus a status: the status is excluded by purity and dominance."""
    X, y = foreign_export(800, seed=1)
    X["Website Visits"] = np.random.default_rng(2).poisson(3, len(X)).astype(float)
    audit = leakage_audit(X, y, foreign_config(tmp_path), CV)
    assert verdicts(audit)["Lead Status"] == "excluded"
    assert "a" in audit.set_index("variable").loc["Lead Status", "signals"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("leadStatus", ["status"]),
        ("Duración llamada", ["duracion", "llamada"]),
        ("Tags", ["tag"]),
        ("Lead Quality", ["quality"]),
        ("callduration", ["duration"]),
        ("Website Visits", []),
        ("Lead Source", []),
        ("Last Activity", []),
        ("Total Time Spent on Website", []),
        ("previous_outcome", []),
        ("poutcome", []),
        ("Do Not Call", []),
        ("call opt-out", []),
        ("group_status", ["status"]),
        ("duration", ["duration"]),
        ("Duration (s)", ["duration"]),
        ("ProductRelated_Duration", []),
        ("session duration", []),
        ("talk_duration_min", ["duration"]),
        ("Marital_Status", []),
        ("Estado civil", []),
        ("employmentStatus", []),
    ],
)
def test_outcome_like_names(name, expected):
    from leadscoring.config import LeakageConfig

    lk = LeakageConfig()
    assert outcome_like_stems(name, lk) == expected
    assert normalised_name("Call Duration (s)") == "call duration s"


def test_shipped_post_contact_fields_are_excluded_when_not_allowed(cfg, sample):
    strict = cfg.model_copy(update={"data": cfg.data.model_copy(update={"use_post_contact_fields": False})})
    X, y = sample.drop(columns="compra"), sample["compra"]
    audit = leakage_audit(X, y, strict, CV).set_index("variable")
    for col in cfg.data.post_contact:
        assert audit.loc[col, "verdict"] == "excluded", audit.loc[col, "reason"]
        assert "data.post_contact" in audit.loc[col, "reason"]
    kept = model_columns_after_audit(strict, audit.reset_index())
    assert not set(kept) & set(cfg.data.post_contact) and "ocupacion" in kept
    assert audit.loc["ocupacion", "verdict"] == "ok"
    allowed = leakage_audit(X, y, cfg, CV).set_index("variable")  # shipped: post-contact fields allowed
    assert (allowed.loc[cfg.data.post_contact, "verdict"] == "review").all()
    assert "review" in audit_summary(allowed.reset_index())


def test_shipped_config_documents_the_leakage_section():
    from tests.conftest import CONFIG

    text = CONFIG.read_text(encoding="utf-8")
    assert "leakage:" in text and "allow_leaky: []" in text
    assert load_config(CONFIG).leakage.dominant_auc == 0.90


def test_unknown_leakage_key_is_refused(make_project):
    path = make_project(leakage={"dominant_auc": 0.9, "typo": 1})
    with pytest.raises(ConfigError, match="leakage.typo"):
        load_config(path)


def _recipe(cfg: ProjectConfig, features: list[str]):
    from sklearn.linear_model import LogisticRegression

    from leadscoring.training.pipeline import build_pipeline

    return build_pipeline(cfg, LogisticRegression(max_iter=1000), features=features)


def test_stakes_show_the_validation_auc_with_and_without_the_excluded_variables(export, tmp_path):
    from leadscoring.training.stakes import WITH, WITHOUT, leakage_stakes, stakes_summary

    X, y = export
    cfg = foreign_config(tmp_path)
    work, valid = slice(0, 1000), slice(1000, None)
    audit = leakage_audit(X[work], y[work], cfg, CV)
    features = audited_features(cfg, audit)
    honest = _recipe(cfg, features).fit(X[work], y[work])
    p = honest.predict_proba(X[valid])[:, 1]
    stakes = leakage_stakes(cfg, audit, features, _recipe, X[work], y[work], X[valid], y[valid], p)
    assert stakes["model"].tolist() == [WITHOUT, WITH]
    assert "Lead Status" not in stakes["variables"].iloc[0] and "Lead Status" in stakes["variables"].iloc[1]
    ours, leaky = stakes["roc_auc"]
    assert leaky > 0.97 and ours < 0.9 and leaky - ours > 0.1  # the status tag nearly decides the outcome
    text = stakes_summary(stakes)
    assert f"**{leaky:.3f}** instead of **{ours:.3f}**" in text and "Lead Status" in text
    assert "the lower figure is the honest one" in text
    from leadscoring.formats import NumberStyle, use_style

    use_style(NumberStyle(",", "."))  # a team that writes 0,924 (as a notebook's setup does)
    try:
        comma = stakes_summary(stakes)
    finally:
        use_style(NumberStyle())
    assert f"**{leaky:.3f}** instead of **{ours:.3f}**".replace(".", ",") in comma
    assert f"| {ours:.3f} |".replace(".", ",") in comma


def test_stakes_let_in_post_contact_fields_the_configuration_keeps_out(export, tmp_path):
    from leadscoring.training.stakes import leakage_stakes

    X, y = export
    cfg = foreign_config(tmp_path, post_contact=["Lead Status"], use_post_contact_fields=False)
    assert "Lead Status" not in cfg.data.model_columns
    audit = leakage_audit(X, y, cfg, CV)
    features = audited_features(cfg, audit)
    p = _recipe(cfg, features).fit(X, y).predict_proba(X)[:, 1]
    stakes = leakage_stakes(cfg, audit, features, _recipe, X, y, X, y, p)
    assert len(stakes) == 2 and "Lead Status" in stakes["variables"].iloc[1]
    assert stakes["roc_auc"].iloc[1] > 0.9  # the diagnostic model really read the status


def test_stakes_with_nothing_excluded_have_one_row_and_say_so(tmp_path):
    from leadscoring.training.stakes import leakage_stakes, stakes_summary

    rng = np.random.default_rng(1)
    y = pd.Series((rng.random(600) < 0.4).astype(int))
    X = pd.DataFrame(
        {
            "Lead Number": range(600),
            "Website Visits": rng.poisson(3 + y).astype(float),
            "Lead Source": rng.choice(["Google", "Email"], 600),
        }
    )
    cfg = foreign_config(tmp_path, columns={"numeric": ["Website Visits"], "categorical": ["Lead Source"]}, labels={})
    audit = leakage_audit(X, y, cfg, CV)
    assert not audit["verdict"].eq("excluded").any()
    p = _recipe(cfg, audited_features(cfg, audit)).fit(X, y).predict_proba(X)[:, 1]
    stakes = leakage_stakes(cfg, audit, audited_features(cfg, audit), _recipe, X, y, X, y, p)
    assert len(stakes) == 1
    assert stakes_summary(stakes).startswith("No variable was excluded by the leakage audit")


def test_model_card_shows_the_audit_section(tmp_path):
    from leadscoring.training.report import model_card

    cfg = foreign_config(tmp_path)
    manifest = {"file": "m.pkl", "created_at": "now", "sha256": "0" * 64, "features": ["Website Visits"]}
    card = model_card(
        manifest,
        pd.DataFrame({"model": ["a"]}),
        pd.DataFrame({"roc_auc": [0.7], "average_precision": [0.5], "brier": [0.2], "gain_at_30pct": [0.5]}, index=["a"]),
        {},
        cfg,
        leakage="AUDIT TEXT\n",
    )
    assert "## Leakage audit\nAUDIT TEXT\n" in card
    won = cfg.model_copy(update={"data": cfg.data.model_copy(update={"positive_value": "Won"})})  # the export's own spelling
    metrics = pd.DataFrame({"roc_auc": [0.7], "average_precision": [0.5], "brier": [0.2], "gain_at_30pct": [0.5]}, index=["a"])
    logistic = model_card({**manifest, "family": "logistic"}, pd.DataFrame({"model": ["a"]}), metrics, {}, won)
    assert "probability of `Converted = Won`" in logistic and "= 1`" not in logistic
    assert "coefficient times the value" in logistic and "SHAP" not in logistic  # the reasons' source, by family
    assert "## Leakage audit\nNot run for this model." in model_card(
        manifest,
        pd.DataFrame({"model": ["a"]}),
        pd.DataFrame({"roc_auc": [0.7], "average_precision": [0.5], "brier": [0.2], "gain_at_30pct": [0.5]}, index=["a"]),
        {},
        cfg,
    )


def test_model_card_figures_follow_the_number_style(tmp_path):
    from leadscoring.training.report import model_card

    cfg = foreign_config(tmp_path)
    cfg = cfg.model_copy(update={"report": cfg.report.model_copy(update={"decimal_mark": ",", "thousands_separator": "."})})
    manifest = {
        "file": "m.pkl",
        "created_at": "now",
        "sha256": "0" * 64,
        "features": ["Website Visits"],
        "cv": {"folds": 5, "roc_auc": 0.91815, "brier": 0.1103},
        "validation": {"roc_auc": 0.92441, "brier": 0.1042, "gain_at_30pct": 0.6123},
    }
    metrics = pd.DataFrame({"roc_auc": [0.7], "average_precision": [0.5], "brier": [0.2], "gain_at_30pct": [0.5]}, index=["a"])
    card = model_card(manifest, pd.DataFrame({"model": ["a"], "roc_auc_mean": [0.9]}), metrics, {}, cfg)
    assert "ROC-AUC 0,9182, Brier 0,1103." in card
    assert "Validation ROC-AUC **0,9244**, Brier **0,1042**" in card and "**61,2 %**" in card
    assert "| a | 0,7000 | 0,5000 |" in card and "0.7000" not in card
    assert "moved" not in card and "Probabilities are off" not in card  # no base rate and mean probability: no claim

    # validation leads converting well above what the model expects: said, in the report's numbers
    shifted = {**manifest, "validation": {**manifest["validation"], "base_rate": 0.151, "mean_probability": 0.116, "n": 1000}}
    card = model_card(shifted, pd.DataFrame({"model": ["a"], "roc_auc_mean": [0.9]}), metrics, {}, cfg)
    assert "**Probabilities are off on new leads.** The 1000 validation leads convert at 15,1 %" in card
    assert "read low by about 30 %" in card


def test_stakes_say_what_the_post_contact_fields_let_in_are_worth(export, tmp_path):
    """A configuration that lets a post-contact field into the model (use_post_contact_fields):
    the card gives the figure without it, since the model's own holds only where the field is
    filled in before a lead is prioritised."""
    from leadscoring.training.stakes import WITHOUT, WITHOUT_ALLOWED, leakage_stakes, stakes_auc, stakes_summary

    X, y = export
    cfg = foreign_config(tmp_path, post_contact=["Lead Status"], use_post_contact_fields=True)
    work, valid = slice(0, 1000), slice(1000, None)
    audit = leakage_audit(X[work], y[work], cfg, CV)
    features = audited_features(cfg, audit)
    assert "Lead Status" in features
    p = _recipe(cfg, features).fit(X[work], y[work]).predict_proba(X[valid])[:, 1]
    stakes = leakage_stakes(cfg, audit, features, _recipe, X[work], y[work], X[valid], y[valid], p)
    row = stakes.set_index("model").loc[WITHOUT_ALLOWED]
    assert stakes["model"].iloc[-1] == WITHOUT_ALLOWED and "Lead Status" not in row["variables"]
    ours, honest = stakes_auc(stakes, WITHOUT), stakes_auc(stakes, WITHOUT_ALLOWED)
    assert ours > 0.97 and honest < 0.9  # the status tag nearly decides the outcome
    text = stakes_summary(stakes)
    assert "(`data.use_post_contact_fields`): Lead Status." in text and f"**{honest:.3f}** instead of **{ours:.3f}**" in text
    assert "No variable was excluded" not in text
    # a field the client confirmed as known before the contact (data.allow_leaky) is no post-contact field
    confirmed = foreign_config(tmp_path / "c", allow_leaky=["Lead Status"])
    audit = leakage_audit(X[work], y[work], confirmed, CV)
    features = audited_features(confirmed, audit)
    p = _recipe(confirmed, features).fit(X[work], y[work]).predict_proba(X[valid])[:, 1]
    stakes = leakage_stakes(confirmed, audit, features, _recipe, X[work], y[work], X[valid], y[valid], p)
    assert "Lead Status" in features and WITHOUT_ALLOWED not in stakes["model"].tolist()


def test_the_audit_summary_says_each_thing_once():
    audit = pd.DataFrame(
        {
            "variable": ["Call Minutes", "Quote Amount", "Visits"],
            "verdict": ["excluded", "excluded", "ok"],
            "allowed": [False, False, False],
            "single_variable_auc": [0.95, 0.93, 0.7],
            "missing_share": [0.4, 0.88, 0.0],
            "reason": ["a", "b", ""],
            "group": ["", "", ""],
        }
    )
    text = audit_summary(audit).split("\n\n")[0]
    assert text.count("Call Minutes") == 1 and "All of them are out of every model." in text
    allowed = audit.assign(allowed=[True, False, False])
    assert "Out of every model: Quote Amount." in audit_summary(allowed)


def test_fields_kept_out_for_review_include_their_derived_features_but_not_those_of_an_excluded_field(tmp_path):
    from leadscoring.training.leakage import blocked_variables, kept_out_for_review

    cfg = foreign_config(
        tmp_path,
        ratios={"budget_per_visit": ("Budget", "Website Visits"), "duration_per_budget": ("Call Duration", "Budget")},
    )
    audit = pd.DataFrame(
        {"variable": ["Budget", "Call Duration", "Website Visits"], "verdict": ["review", "excluded", "ok"], "allowed": [False] * 3}
    )
    assert kept_out_for_review(cfg, audit) == ["Budget", "budget_per_visit"]  # duration_per_budget: also an excluded field's
    assert set(kept_out_for_review(cfg, audit)) < set(blocked_variables(cfg, audit))
