"""Honest and competitive on every export (issue 19): leaks that come in blocks are caught,
honest signals are spared, calendar columns and creation dates are kept, and the model family
is chosen by cross-validation. Every export here is generated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedKFold, TimeSeriesSplit

from leadscoring.config import DataConfig, PathsConfig, ProjectConfig
from leadscoring.ingest.profile import profile_export
from leadscoring.training.compare import (
    NO_RANKING_COST,
    calibrated,
    candidate_models,
    choose_calibration,
    choose_model,
    compare_calibration,
    cross_validate_candidates,
    cv_splitter,
    model_label,
    out_of_fold,
)
from leadscoring.training.leakage import audit_summary, leakage_audit, model_columns_after_audit
from leadscoring.training.selection import confirm_drops

CV = StratifiedKFold(3, shuffle=True, random_state=0)


def config(tmp: Path, numeric: list[str], categorical: list[str], **data: object) -> ProjectConfig:
    return ProjectConfig(
        root=tmp,
        paths=PathsConfig(raw_data="export.csv"),
        data=DataConfig(
            id_column="id",
            target_column="converted",
            columns={"numeric": numeric, "categorical": categorical},
            **data,
        ),
        features={"ratios": {}, "products": {}},
    )


def honest(n: int, rng: np.random.Generator, base: float) -> tuple[pd.DataFrame, np.ndarray]:
    """Three honest inputs of moderate strength and the outcome they drive."""
    a, b = rng.normal(size=n), rng.normal(size=n)
    channel = rng.choice(["search", "social", "referral", "email"], n)
    logit = np.log(base / (1 - base)) + 0.8 * a + 0.5 * b + np.where(channel == "referral", 0.7, 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"id": np.arange(n), "visits": np.round(np.exp(a), 2), "pages": b, "channel": channel}), y


def verdicts(audit: pd.DataFrame) -> dict[str, str]:
    return dict(zip(audit["variable"], audit["verdict"], strict=True))


def test_a_block_of_post_outcome_fields_masking_one_another_is_excluded_as_one_group(tmp_path):
    """Eight won-deal fields joined to the lead, each filled in for part of the won deals
    (from all of them down to 4 %): every one is excluded, named as one group, and the model
    keeps exactly the honest inputs."""
    rng = np.random.default_rng(1)
    X, y = honest(8000, rng, 0.3)
    deal = (y == 1) & (rng.random(len(y)) < 0.7)
    keep = [1.0, 0.9, 0.7, 0.5, 0.3, 0.15, 0.08, 0.04]
    names = ["amount", "seats", "term_months", "discount", "invoice_day", "onboarding_hours", "payment_terms", "rep_region"]
    for name, share in zip(names, keep, strict=True):
        filled = deal & (rng.random(len(y)) < share)
        if name in ("payment_terms", "rep_region"):
            X[name] = np.where(filled, rng.choice(["net30", "net60", "north", "south"], len(y)), "")
        else:
            X[name] = np.where(filled, np.round(rng.gamma(2, 50, len(y)), 1), np.nan)
    cfg = config(
        tmp_path,
        ["visits", "pages", *[n for n in names if n not in ("payment_terms", "rep_region")]],
        ["channel", "payment_terms", "rep_region"],
    )
    audit = leakage_audit(X, y, cfg, CV)
    v = verdicts(audit)
    assert all(v[n] == "excluded" for n in names), audit[["variable", "verdict", "reason"]]
    assert v["visits"] == v["pages"] == v["channel"] == "ok"
    groups = set(audit.loc[audit["variable"].isin(names), "group"])
    assert len(groups) == 1
    group = groups.pop()
    assert group.startswith("filled in together") and all(n in group for n in names)
    assert model_columns_after_audit(cfg, audit) == ["visits", "pages", "channel"]
    assert "filled in for the same leads" in audit_summary(audit)


def test_a_field_filled_in_with_an_excluded_one_is_excluded_with_it(tmp_path):
    """A sales rep assigned at the contact, filled in for exactly the leads whose call has a
    duration: its missingness alone ranks leads at about 0.7 (no sign by itself), but it was
    entered with the call, so it goes out with it and the two are named as one block."""
    rng = np.random.default_rng(21)
    X, y = honest(5000, rng, 0.1)
    contacted = np.where(y == 1, rng.random(len(y)) < 0.97, rng.random(len(y)) < 0.55)
    X["call_minutes"] = np.where(contacted, np.round(rng.gamma(2, 4 + 6 * y, len(y)), 1), np.nan)
    X["sales_rep"] = np.where(contacted, rng.choice(["Martin", "Dubois", "Leroy"], len(y)), "")
    X["region"] = np.where(rng.random(len(y)) < 0.4, "", rng.choice(["north", "south"], len(y)))  # honest, often empty
    cfg = config(tmp_path, ["visits", "pages", "call_minutes"], ["channel", "sales_rep", "region"])
    audit = leakage_audit(X, y, cfg, CV).set_index("variable")
    assert audit.loc["call_minutes", "verdict"] == "excluded" and audit.loc["sales_rep", "missing_auc"] < 0.75
    assert audit.loc["sales_rep", "verdict"] == "excluded" and "same leads as call_minutes" in audit.loc["sales_rep", "reason"]
    assert audit.loc["sales_rep", "group"] == audit.loc["call_minutes", "group"] != ""
    assert {v: audit.loc[v, "verdict"] for v in ("visits", "pages", "channel", "region")} == dict.fromkeys(
        ("visits", "pages", "channel", "region"), "ok"
    )
    # a field the client confirmed (data.allow_leaky) takes nothing out with it
    allowed = config(
        tmp_path, ["visits", "pages", "call_minutes"], ["channel", "sales_rep", "region"], allow_leaky=["call_minutes"]
    )
    assert leakage_audit(X, y, allowed, CV).set_index("variable").loc["sales_rep", "verdict"] == "ok"


def test_two_nearly_full_fields_are_not_a_block(tmp_path):
    """A leak filled in for 97 % of leads overlaps any column filled for 89 %: no sign that
    they were entered together."""
    rng = np.random.default_rng(22)
    X, y = honest(5000, rng, 0.3)
    filled = rng.random(len(y)) < 0.97
    X["call_minutes"] = np.where(filled, np.round(rng.gamma(2, 4 + 8 * y, len(y)), 1), np.nan)
    X["company_size"] = np.where(filled & (rng.random(len(y)) < 0.92), rng.choice(["1-10", "11-50", "51+"], len(y)), "")
    cfg = config(tmp_path, ["visits", "pages", "call_minutes"], ["channel", "company_size"])
    audit = leakage_audit(X, y, cfg, CV).set_index("variable")
    assert audit.loc["call_minutes", "verdict"] == "excluded" and audit.loc["company_size", "verdict"] == "ok"


def test_a_nearly_full_flagged_column_joins_no_block(tmp_path):
    """A post-contact field filled in for 99 % of leads contains every sparser flagged field:
    that is no sign they are filled in together."""
    rng = np.random.default_rng(15)
    X, y = honest(3000, rng, 0.3)
    X["last_touch"] = np.where(rng.random(len(y)) < 0.01, "", rng.choice(["email", "call", "visit"], len(y)))
    sparse = rng.random(len(y)) < 0.5
    X["score_a"] = np.where(sparse, np.nan, rng.integers(0, 20, len(y)).astype(float))
    X["score_b"] = np.where(sparse, np.nan, rng.integers(0, 20, len(y)).astype(float))
    cfg = config(
        tmp_path,
        ["visits", "pages", "score_a", "score_b"],
        ["channel", "last_touch"],
        post_contact=["last_touch", "score_a", "score_b"],
        use_post_contact_fields=True,
    )
    groups = leakage_audit(X, y, cfg, CV).set_index("variable")["group"]
    assert groups["last_touch"] == "" and groups["score_a"] == groups["score_b"] != ""


def test_a_sparse_column_filled_only_when_won_is_excluded(tmp_path):
    """60 of 8,000 leads have it, every one a conversion: excluded however sparse."""
    rng = np.random.default_rng(2)
    X, y = honest(8000, rng, 0.3)
    won = np.flatnonzero(y == 1)
    filled = np.zeros(len(y), dtype=bool)
    filled[rng.choice(won, 60, replace=False)] = True
    X["contract_value"] = np.where(filled, np.round(rng.gamma(3, 1000, len(y))), np.nan)
    cfg = config(tmp_path, ["visits", "pages", "contract_value"], ["channel"])
    audit = leakage_audit(X, y, cfg, CV).set_index("variable")
    assert audit.loc["contract_value", "verdict"] == "excluded"
    assert "filled in almost only for leads of one outcome" in audit.loc["contract_value", "reason"]
    assert "contract_value" not in model_columns_after_audit(cfg, audit.reset_index())


def test_five_filled_rows_do_not_trip_the_sparse_rule(tmp_path):
    rng = np.random.default_rng(3)
    X, y = honest(4000, rng, 0.3)
    filled = np.zeros(len(y), dtype=bool)
    filled[rng.choice(np.flatnonzero(y == 1), 5, replace=False)] = True
    X["rare_field"] = np.where(filled, 1.0, np.nan)
    audit = leakage_audit(X, y, config(tmp_path, ["visits", "pages", "rare_field"], ["channel"]), CV)
    assert verdicts(audit)["rare_field"] == "ok"


def test_a_strong_negative_flag_without_leak_evidence_stays_in_the_model(tmp_path):
    """A behavioural flag whose value 1 covers 18 % of leads converting at 0.4 % (base about
    5 %) is an honest negative signal, not a leak."""
    rng = np.random.default_rng(4)
    n = 8000
    flag = rng.random(n) < 0.18
    X, _ = honest(n, rng, 0.06)
    p = np.where(flag, 0.004, 0.06)
    y = (rng.random(n) < p).astype(int)
    X["unsubscribed"] = np.where(flag, "1", "0")
    cfg = config(tmp_path, ["visits", "pages"], ["channel", "unsubscribed"])
    audit = leakage_audit(X, y, cfg, CV)
    assert verdicts(audit)["unsubscribed"] == "ok", audit.set_index("variable").loc["unsubscribed", "reason"]
    assert "unsubscribed" in model_columns_after_audit(cfg, audit)


@pytest.mark.parametrize("name", ["previous_outcome", "poutcome", "Prior Campaign Result"])
def test_a_previous_outcome_field_without_leak_evidence_stays_in_the_model(tmp_path, name):
    """The outcome of an earlier campaign is known before the call: its name is no sign."""
    rng = np.random.default_rng(5)
    n = 6000
    X, _ = honest(n, rng, 0.12)
    prev = rng.choice(["success", "failure", "nonexistent"], n, p=[0.1, 0.2, 0.7])
    y = (rng.random(n) < np.where(prev == "success", 0.65, 0.07)).astype(int)
    X[name] = prev
    cfg = config(tmp_path, ["visits", "pages"], ["channel", name])
    audit = leakage_audit(X, y, cfg, CV).set_index("variable")
    assert audit.loc[name, "single_variable_auc"] > 0.7  # strong enough that a name rule would have excluded it
    assert audit.loc[name, "verdict"] == "ok", audit.loc[name, "reason"]
    assert name in model_columns_after_audit(cfg, audit.reset_index())


def test_a_name_alone_raises_a_review_that_keeps_the_field_out_until_allowed(tmp_path):
    rng = np.random.default_rng(6)
    X, y = honest(3000, rng, 0.3)
    X["lead_status"] = rng.choice(["new", "open", "working"], len(y))  # no information at all
    cfg = config(tmp_path, ["visits", "pages"], ["channel", "lead_status"])
    audit = leakage_audit(X, y, cfg, CV).set_index("variable")
    assert audit.loc["lead_status", "verdict"] == "review" and not audit.loc["lead_status", "allowed"]
    assert "lead_status" not in model_columns_after_audit(cfg, audit.reset_index())
    allowed = config(tmp_path, ["visits", "pages"], ["channel", "lead_status"], allow_leaky=["lead_status"])
    audit = leakage_audit(X, y, allowed, CV)
    assert "lead_status" in model_columns_after_audit(allowed, audit)
    post = config(
        tmp_path, ["visits", "pages"], ["channel", "lead_status"], post_contact=["lead_status"], use_post_contact_fields=True
    )
    row = leakage_audit(X, y, post, CV).set_index("variable").loc["lead_status"]
    assert row["allowed"] and "kept out" not in row["reason"] and "data.use_post_contact_fields" in row["reason"]


def _write(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def test_month_weekday_and_hour_columns_are_inputs(tmp_path):
    rng = np.random.default_rng(7)
    n = 600
    df = pd.DataFrame(
        {
            "lead": [f"L{i}" for i in range(n)],
            "contact_month": rng.choice(["may", "jun", "jul", "aug", "nov"], n),
            "Month": rng.choice(["Feb", "Mar", "May", "Oct", "Nov", "Dec"], n),
            "weekday": rng.choice(["Monday", "Tuesday", "Friday"], n),
            "day": rng.integers(1, 32, n),
            "hour": rng.choice(["09:00", "13:30", "18:00"], n),
            "y": rng.choice(["yes", "no"], n),
        }
    )
    d = profile_export(_write(df, tmp_path / "e.csv"), "y")
    assert {"contact_month", "Month", "weekday", "hour"} <= set(d.categorical), d.left_out
    assert "day" in d.numeric and d.date_column is None
    assert "month names" in d.reasons["Month"]


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("created_at", "%Y-%m-%dT%H:%M:%SZ"), ("first_contact_date", "%d/%m/%Y"), ("Lead Created On", "%b %d, %Y")],
)
def test_the_creation_date_is_found_under_several_names_and_formats(tmp_path, name, fmt):
    rng = np.random.default_rng(8)
    n = 800
    when = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.sort(rng.integers(0, 400, n)), unit="D")
    df = pd.DataFrame(
        {
            "lead": [f"L{i}" for i in range(n)],
            "last_modified": (when + pd.Timedelta(days=30)).strftime("%Y-%m-%d"),  # a later event: never the creation date
            name: when.strftime(fmt),
            "visits": rng.poisson(3, n),
            "y": np.where(rng.random(n) < 0.3, "yes", "no"),
        }
    )
    d = profile_export(_write(df, tmp_path / "e.csv"), "y")
    assert d.date_column == name and "creation date" in d.reasons["date"]
    assert name not in d.left_out and "last_modified" in d.left_out


def test_a_strong_drift_of_the_conversion_rate_is_warned(tmp_path):
    rng = np.random.default_rng(9)
    n = 2000
    t = np.linspace(0, 1, n)
    df = pd.DataFrame(
        {
            "created": (pd.Timestamp("2025-01-01") + pd.to_timedelta(t * 300, unit="D")).strftime("%Y-%m-%d"),
            "visits": rng.poisson(3, n),
            "y": np.where(rng.random(n) < 0.02 + 0.12 * t, "1", "0"),
        }
    )
    d = profile_export(_write(df, tmp_path / "e.csv"), "y")
    assert d.date_column == "created" and any("drifts strongly" in w for w in d.warnings)


def test_a_conversion_rate_rising_by_half_is_warned_and_a_steady_one_is_not():
    from leadscoring.ingest.profile import conversion_drift

    rng = np.random.default_rng(10)
    n = 5000
    t = np.linspace(0, 1, n)
    when = pd.Series(pd.Timestamp("2023-01-01") + pd.to_timedelta(t * 540, unit="D"))
    rising = pd.Series((rng.random(n) < 0.09 + 0.09 * t).astype(int))  # about 10 % to 17 %: 1.7-fold
    assert "drifts strongly" in conversion_drift(when, rising)
    steady = pd.Series((rng.random(n) < 0.12).astype(int))
    assert conversion_drift(when, steady) == ""
    small = pd.Series((rng.random(400) < 0.05 + 0.05 * np.linspace(0, 1, 400)).astype(int))  # 5 % to 10 % on few leads
    assert conversion_drift(when.iloc[:400], small) == ""  # not beyond chance


def test_forward_chaining_folds_train_on_earlier_leads_only(tmp_path):
    cfg = config(tmp_path, ["visits"], [], date_column="created")
    cv = cv_splitter(cfg, 4)
    assert isinstance(cv, TimeSeriesSplit)
    for train, test in cv.split(np.zeros((100, 1))):
        assert train.max() < test.min()
    X = pd.DataFrame({"visits": np.arange(100.0)})
    y = np.tile([0, 1], 50)
    from sklearn.linear_model import LogisticRegression

    p = out_of_fold(LogisticRegression(), X, y, cv)
    assert np.isnan(p[:20]).all() and not np.isnan(p[20:]).any()  # the first block is never tested


def test_repeated_folds_test_each_lead_once_per_draw_and_start_with_the_single_split(tmp_path):
    """The drop check's folds (notebook 06): three draws of the stratified folds; a dated
    project keeps its one forward-chaining split."""
    cfg = config(tmp_path, ["visits"], [])
    X, y = np.zeros((200, 1)), np.tile([0, 0, 0, 1], 50)
    repeated = cv_splitter(cfg, 5, repeats=3)
    folds = list(repeated.split(X, y))
    assert repeated.get_n_splits() == len(folds) == 15
    tested = np.concatenate([test for _, test in folds])
    assert np.array_equal(np.bincount(tested, minlength=200), np.full(200, 3))
    single = [test for _, test in cv_splitter(cfg, 5).split(X, y)]
    assert all(np.array_equal(a, b) for a, (_, b) in zip(single, folds[:5], strict=False))
    assert not all(np.array_equal(a, b) for a, (_, b) in zip(single, folds[5:10], strict=False))
    dated = config(tmp_path, ["visits"], [], date_column="created")
    assert isinstance(cv_splitter(dated, 5, repeats=3), TimeSeriesSplit)


def linear_export(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """Purely additive log-odds on many weak inputs: logistic regression's home ground."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 8))
    logit = Z @ np.array([0.9, -0.7, 0.6, 0.5, -0.5, 0.4, 0.3, -0.3])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    X = pd.DataFrame(Z, columns=[f"x{i}" for i in range(8)])
    X.insert(0, "id", np.arange(n))
    return X, pd.Series(y)


def test_logistic_regression_ships_when_it_wins_cross_validation(tmp_path):
    X, y = linear_export(500, 10)
    cfg = config(tmp_path, [f"x{i}" for i in range(8)], [])
    table = cross_validate_candidates(candidate_models(cfg, None, float((y == 0).sum() / y.sum()), fast=True), X, y, CV)
    choice = choose_model(table)
    assert choice.family == "logistic", table[["model", "roc_auc_mean", "roc_auc_se"]]
    assert "random_forest" not in choice.candidate and choice.reason


def test_the_simpler_family_wins_within_one_standard_error():
    table = pd.DataFrame(
        {
            "model": ["xgboost_plain", "logistic_plain", "random_forest_weighted"],
            "family": ["xgboost", "logistic", "random_forest"],
            "roc_auc_mean": [0.801, 0.798, 0.85],
            "roc_auc_se": [0.004, 0.004, 0.004],
        }
    )
    assert choose_model(table).family == "logistic"  # random forest is reference only
    table.loc[0, "roc_auc_mean"] = 0.81
    choice = choose_model(table)
    assert choice.family == "xgboost" and "next family logistic" in choice.reason
    within = pd.concat(
        [
            table,
            pd.DataFrame({"model": ["xgboost_weighted"], "family": ["xgboost"], "roc_auc_mean": [0.812], "roc_auc_se": [0.004]}),
        ]
    )
    choice = choose_model(within)  # weighting gains less than one standard error: the plain model ships
    assert choice.candidate == "xgboost_plain" and "simpler imbalance handling" in choice.reason


def test_calibration_is_chosen_among_methods_that_keep_the_ranking(tmp_path):
    X, y = linear_export(600, 11)
    cfg = config(tmp_path, [f"x{i}" for i in range(8)], [])
    pipe = candidate_models(cfg, None, 1.0, fast=True)[0].pipeline
    table = compare_calibration(pipe, X, y, CV, ["isotonic", "sigmoid"])
    assert table.loc[0, "auc_change"] == 0 and {"isotonic", "sigmoid"} <= set(table["calibration"])
    method, why = choose_calibration(table, "auto")
    costing_nothing = table[table["auc_change"] >= -NO_RANKING_COST]
    assert method == costing_nothing.sort_values("brier_mean")["calibration"].iloc[0] and "Brier" in why
    # a calibration that costs ranking never ships: the model's own probabilities do
    costly = table.assign(auc_change=[0.0, -0.01, -0.01])
    assert choose_calibration(costly, "auto")[0] == "uncalibrated"
    # isotonic with a better Brier score but a small ranking cost (ties) does not ship
    ties = pd.DataFrame(
        {"calibration": ["uncalibrated", "isotonic", "sigmoid"], "brier_mean": [0.12, 0.110, 0.112], "auc_change": [0, -0.0014, 0]}
    )
    assert choose_calibration(ties, "auto")[0] == "sigmoid"
    # calibration ships only when it improves the probabilities (as the shipped XGBoost: 0.1103 vs 0.1125)
    own = ties.assign(brier_mean=[0.1103, 0.1101, 0.1125])
    method, why = choose_calibration(own, "auto")
    assert method == "uncalibrated" and why.startswith("none: the model's own probabilities have the lowest CV Brier score (0.1103")
    assert model_label("xgboost_plain", method) == "xgboost_plain"
    assert model_label("xgboost_plain", "sigmoid") == "xgboost_plain + sigmoid calibration"
    assert calibrated(pipe, "uncalibrated", CV).get_params().keys() == pipe.get_params().keys()  # the pipeline as it is
    # a forward-chaining split still calibrates (on contiguous blocks) and scores every lead
    dated = calibrated(pipe, "sigmoid", TimeSeriesSplit(3)).fit(X, y)
    assert dated.predict_proba(X)[:, 1].min() > 0


def test_a_variable_is_dropped_only_when_cv_says_the_model_does_better_without_it(tmp_path):
    X, y = linear_export(600, 12)
    cfg = config(tmp_path, [f"x{i}" for i in range(8)], [])
    decision = pd.DataFrame(
        {
            "variable": [f"x{i}" for i in range(8)],
            "keep": [True] * 6 + [False, False],
            "reason": ["informative"] * 6 + ["redundant with x0 (rho 0.90)", "useless: no information"],
        }
    )
    from sklearn.linear_model import LogisticRegression

    from leadscoring.training.pipeline import build_pipeline

    out, figures = confirm_drops(decision, lambda f: build_pipeline(cfg, LogisticRegression(), features=f), X, y, CV)
    # x6 and x7 carry real signal: dropping them costs ROC-AUC, so both are kept
    assert figures["cv_roc_auc_with"] > figures["cv_roc_auc_without"]
    assert out["keep"].all() and out.loc[6, "reason"].startswith("kept: redundant")


def test_a_saved_model_predicts_with_every_core_and_the_same_scores(tmp_path):
    """No thread count is baked into a saved model; predictions do not depend on it."""
    from leadscoring.training.pipeline import all_cores, build_pipeline, final_estimator, xgb_classifier

    X, y = linear_export(400, 13)
    cfg = config(tmp_path, [f"x{i}" for i in range(8)], [])
    model = calibrated(build_pipeline(cfg, xgb_classifier(0, n_estimators=30), scale=False), "sigmoid", CV).fit(X, y)
    before = model.predict_proba(X)[:, 1]
    assert final_estimator(model).n_jobs == 1  # training: one thread per fit
    assert final_estimator(all_cores(model)).n_jobs is None
    np.testing.assert_allclose(model.predict_proba(X)[:, 1], before, rtol=0, atol=1e-12)


def test_noise_candidates_are_dropped_when_cv_cannot_tell_them_apart(tmp_path):
    X, y = linear_export(600, 14)
    rng = np.random.default_rng(14)
    X["noise"] = rng.normal(size=len(X))
    cfg = config(tmp_path, [*[f"x{i}" for i in range(8)], "noise"], [])
    decision = pd.DataFrame(
        {
            "variable": [*[f"x{i}" for i in range(8)], "noise"],
            "keep": [True] * 8 + [False],
            "reason": ["informative"] * 8 + ["useless"],
        }
    )
    from sklearn.linear_model import LogisticRegression

    from leadscoring.training.pipeline import build_pipeline

    out, figures = confirm_drops(decision, lambda f: build_pipeline(cfg, LogisticRegression(), features=f), X, y, CV)
    assert not out.set_index("variable").loc["noise", "keep"] and "no better with it" in out.iloc[-1]["reason"]
    assert figures["difference_se"] > 0
    assert "over 3 folds" in out.iloc[-1]["reason"]
    repeated = cv_splitter(cfg, 3, repeats=2)
    again, twice = confirm_drops(decision, lambda f: build_pipeline(cfg, LogisticRegression(), features=f), X, y, repeated)
    assert "over 6 folds" in again.iloc[-1]["reason"]
    from sklearn.model_selection import cross_val_score

    diff = [
        cross_val_score(build_pipeline(cfg, LogisticRegression(), features=f), X, y, cv=repeated, scoring="roc_auc")
        for f in ([f"x{i}" for i in range(8)], [*[f"x{i}" for i in range(8)], "noise"])
    ]
    d = diff[0] - diff[1]  # the second draw tests the same leads again: one draw's fold count, not six
    assert twice["difference_se"] == pytest.approx(np.std(d, ddof=1) / np.sqrt(3))


def test_tuned_parameters_need_more_than_one_standard_error():
    from types import SimpleNamespace

    from leadscoring.training.compare import tuned_params

    search = SimpleNamespace(best_score_=0.7824, best_params_={"model__max_depth": 3})
    params, reason = tuned_params(search, default_auc=0.7818, default_se=0.005)
    assert params == {} and "within one standard error" in reason
    params, reason = tuned_params(search, default_auc=0.7700, default_se=0.005)
    assert params == {"model__max_depth": 3} and "more than one standard error" in reason


def test_hundreds_of_rare_levels_are_no_evidence_and_no_out_of_fold_importance_makes_a_candidate():
    """A column of company names (one lead each: pure noise) has a huge in-sample information
    value over its raw levels; counted as the model sees it (rare levels as one), it has
    none. A variable that ranks nothing out of fold is a drop candidate whatever its IV."""
    from leadscoring.training.selection import decide, selection_table

    X, y = linear_export(800, 15)
    rng = np.random.default_rng(15)
    prepared = X.drop(columns="id").assign(company=[f"company {i}" for i in rng.permutation(len(X))])
    raw = selection_table(prepared, y, [], seed=0).set_index("variable")
    grouped = selection_table(prepared, y, [], seed=0, rare_min_share=0.01).set_index("variable")
    assert raw.loc["company", "information_value"] > 1.0  # each name "predicts" its one lead
    assert grouped.loc["company", "information_value"] < 0.02
    assert grouped.loc["x0", "information_value"] == pytest.approx(raw.loc["x0", "information_value"])

    perm = pd.Series(0.01, index=prepared.columns).rename("permutation_importance")
    perm["company"], perm["x7"] = -0.002, 0.0
    table = selection_table(prepared, y, [], seed=0, permutation=perm)  # raw levels: the IV alone would keep it
    out = decide(table, pd.DataFrame(columns=["a", "b", "rho"]), [], [], True).set_index("variable")
    assert not out.loc["company", "keep"] and out.loc["company", "reason"] == "useless: no out-of-fold importance"
    assert not out.loc["x7", "keep"] and out.loc["x7", "reason"].startswith("useless")
    assert out.drop(index=["company", "x7"])["keep"].all()
