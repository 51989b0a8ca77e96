"""What a score tells the sales team: reasons with their evidence checked by hand on a tiny
model, fit and engagement scores, trend on a two-run history, and the same fields for the
same lead on every output path (CSV, parquet, API single and batch, CRM payload)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

from leadscoring.artifacts import SCORE_MODEL, save_model
from leadscoring.config import DataConfig, PathsConfig, ProjectConfig
from leadscoring.serving.batch import score_file
from leadscoring.serving.history import ScoreHistory
from leadscoring.serving.payloads import crm_payloads
from leadscoring.serving.scorer import Scorer, to_score
from leadscoring.serving.service import create_app
from leadscoring.training.explanations import contributions, reason_book_for, reason_text
from leadscoring.training.grades import grades_for
from leadscoring.training.pipeline import build_pipeline

AT = "2026-05-01T09:00:00Z"


def tiny_export() -> pd.DataFrame:
    """200 leads whose conversion rates are known by construction (see the test)."""
    i = np.arange(200)
    industry = np.where(i % 4 == 0, "Finance", np.where(i % 4 == 3, None, "Retail")).astype(object)
    industry[[3, 7, 11, 15, 19]] = "Rare"
    converted = np.select(
        [industry == "Finance", industry == "Retail", industry == "Rare"], [i < 160, i >= 150, True], default=i >= 160
    )
    return pd.DataFrame(
        {"Lead": [f"L{k:03d}" for k in i], "Industry": industry, "Visits": i.astype(float), "Won": converted.astype(int)}
    )


def tiny_config(root) -> ProjectConfig:
    data = DataConfig(
        id_column="Lead",
        target_column="Won",
        columns={"numeric": ["Visits"], "categorical": ["Industry"]},
        labels={"Industry": "Industry", "Visits": "Website visits"},
        fit_columns=["Industry"],
        engagement_columns=["Visits"],
    )
    return ProjectConfig(root=root, paths=PathsConfig(raw_data="raw/export.csv", score_history=str(root / "h.parquet")), data=data)


@pytest.fixture()
def tiny(tmp_path):
    cfg = tiny_config(tmp_path)
    df = tiny_export()
    X, y = df.drop(columns="Won"), df["Won"]
    model = build_pipeline(cfg, LogisticRegression(max_iter=2000)).fit(X, y)
    book = reason_book_for(cfg, model, X, y)
    save_model(
        model,
        tmp_path / SCORE_MODEL,
        kind="lead_scoring_model",
        reasons=book.to_dict(),
        grades=grades_for(cfg, to_score(model.predict_proba(X)[:, 1]), X),
    )
    return cfg, model, book, X, y


def test_evidence_is_the_training_conversion_rate_of_the_level(tiny):
    _, _, book, _, _ = tiny
    assert book.base_rate == 0.4  # 40 + 25 + 10 + 5 of 200
    assert book.evidence("Industry", ["Finance", "Retail", None]) == [
        "80 % of such leads converted (all leads: 40 %)",  # 40 of 50
        "25 % of such leads converted (all leads: 40 %)",  # 25 of 100
        "22 % of such leads converted (all leads: 40 %)",  # 10 of 45 left blank
    ]
    assert book.evidence("Industry", ["Rare", "Mining"]) == [
        "few such leads in the training data (5)",
        "a value not seen in the training leads",
    ]


def test_evidence_of_a_number_is_where_it_stands_and_how_its_range_converted(tiny):
    _, _, book, _, _ = tiny
    # 150 visits: 50 of 200 leads have at least as many; its decile (140-159) converted 10 of 20.
    assert book.evidence("Visits", [150.0]) == ["top 25 % of leads; 50 % of leads in this range converted"]
    assert book.evidence("Visits", [10.0])[0].startswith("bottom 6 % of leads")  # 0..10: 11 of 200
    assert book.values("Visits", [1230.0, 4.5, np.nan]) == ["1,230", "4.5", "missing"]


def test_numbers_in_reasons_are_written_in_the_report_s_style(tiny):
    """A Spanish sales team reads 1.230 visits and 4,5, as its reports write them (report:)."""
    cfg, model, _, X, y = tiny
    spanish = cfg.model_copy(update={"report": cfg.report.model_copy(update={"decimal_mark": ",", "thousands_separator": "."})})
    book = type(reason_book_for(cfg, model, X, y)).from_dict(reason_book_for(spanish, model, X, y).to_dict())  # via the manifest
    assert book.values("Visits", [1230.0, 4.5, np.nan]) == ["1.230", "4,5", "missing"]
    assert book.values("Industry", ["Finance, Inc."]) == ["Finance, Inc."]  # words are left as they are


def test_yes_and_no_in_reasons_are_the_export_s_words(tiny):
    cfg, model, _, X, y = tiny
    german = cfg.model_copy(update={"data": cfg.data.model_copy(update={"yes_values": ["1", "Ja"], "no_values": ["N", "Nein"]})})
    book = reason_book_for(german, model, X, y)
    assert book.yes_no_words == ["ja", "nein"] and reason_book_for(cfg, model, X, y).yes_no_words == ["yes", "no"]
    book.yes_no.append("Newsletter")
    assert book.values("Newsletter", [1.0, 0.0, np.nan]) == ["ja", "nein", "missing"]


def test_reasons_follow_the_contributions(tiny):
    cfg, model, book, X, _ = tiny
    leads = X.iloc[[0, 150, 199]].reset_index(drop=True)
    contrib, prepared = contributions(model, leads)
    scorer = Scorer.load(cfg, cfg.root, with_segments=False)
    reasons = scorer.score_columns(leads, scored_at=AT)["reasons"]
    for i, lead_reasons in enumerate(reasons):
        expected = {v: round(float(contrib.loc[i, v]), 3) for v in contrib.columns if contrib.loc[i, v] != 0}
        assert {r["variable"]: r["effect"] for r in lead_reasons} == expected
        effects = [r["effect"] for r in lead_reasons]
        assert effects == sorted([e for e in effects if e > 0], reverse=True) + sorted(e for e in effects if e < 0)
    finance = next(r for r in reasons[0] if r["variable"] == "Industry")
    assert finance == {
        "variable": "Industry",
        "label": "Industry",
        "value": "Finance",
        "effect": finance["effect"],
        "evidence": "80 % of such leads converted (all leads: 40 %)",
    }
    assert finance["effect"] > 0
    text = reason_text(reasons[0])
    assert "+ Industry: Finance — 80 % of such leads converted (all leads: 40 %)" in text


@pytest.mark.parametrize("n", [2, 40])  # a few leads (lead by lead) and many (by variable)
def test_reasons_show_a_lead_s_own_number_not_the_clipping_bound(tiny, n):
    """The model reads numbers clipped to the training leads' percentiles 1 and 99; a sales
    person reads the lead's own: 500 visits, not the 99th percentile."""
    cfg, model, _, X, _ = tiny
    lo, hi = model.named_steps["clean"].clip_["Visits"]
    leads = pd.concat([X.iloc[[0, 199]]] * (n // 2), ignore_index=True).assign(Visits=[0.0, 500.0] * (n // 2))
    reasons = Scorer.load(cfg, cfg.root, with_segments=False).score_columns(leads, scored_at=AT)["reasons"]
    shown = [next(r["value"] for r in lead if r["variable"] == "Visits") for lead in reasons[:2]]
    assert lo > 0 and hi < 500 and shown == ["0", "500"]
    assert next(r["evidence"] for r in reasons[1] if r["variable"] == "Visits").startswith("top 1 % of leads")


def test_reason_counts_are_configurable(tiny):
    cfg, model, book, X, _ = tiny
    contrib, prepared = contributions(model, X)
    values = {v: prepared[v].to_numpy() for v in prepared.columns}
    only_up = book.reasons(contrib.to_numpy(), list(contrib.columns), values, 1, 0)
    assert all(len(r) <= 1 and all(x["effect"] > 0 for x in r) for r in only_up)
    assert book.reasons(contrib.to_numpy(), list(contrib.columns), values, 0, 0) == [[] for _ in range(len(X))]


def test_fit_and_engagement_are_shares_of_training_leads_below(tiny):
    cfg, model, book, X, _ = tiny
    contrib, _ = contributions(model, X)
    out = Scorer.load(cfg, cfg.root, with_segments=False).score_columns(X, scored_at=AT)
    for group, column in (("fit", "Industry"), ("engagement", "Visits")):
        partial = contrib[column].to_numpy()
        by_hand = np.array([100 * np.mean(partial <= p) for p in partial])
        assert np.abs(out[f"{group}_score"] - by_hand).max() <= 1.0
    assert out["engagement_score"][199] == 100 and out["engagement_score"][0] <= 1  # most and fewest visits


def test_trend_against_the_previous_run(tiny):
    cfg, _, _, X, _ = tiny
    scorer = Scorer.load(cfg, cfg.root, with_segments=False)
    leads = X.iloc[[0, 1, 2, 3]].reset_index(drop=True)
    first = scorer.score_columns(leads, scored_at="2026-05-01T09:00:00Z")
    assert first["trend"].tolist() == ["new"] * 4
    earlier = first["score"] + np.array([-10, 0, 4, 0])  # what the leads scored last week
    ScoreHistory(cfg.path("score_history")).append(
        leads["Lead"].iloc[:3], np.clip(earlier[:3], 0, 100), "v0", "2026-04-24T09:00:00Z"
    )
    second = scorer.score_columns(leads, scored_at="2026-05-01T09:00:00Z")
    assert second["previous_score"][:3].tolist() == np.clip(earlier[:3], 0, 100).tolist()
    assert np.isnan(second["previous_score"][3])
    expected = ["improving" if first["score"][0] - min(earlier[0], 100) >= 5 else "steady", "steady", "steady", "new"]
    assert second["trend"].tolist() == expected
    # ids that are row numbers name a lead only within its file: nothing to compare with
    numbered = cfg.model_copy(update={"data": cfg.data.model_copy(update={"id_from_row_number": True})})
    again = Scorer.load(numbered, cfg.root, with_segments=False).score_columns(leads, scored_at="2026-05-01T09:00:00Z")
    assert again["trend"].tolist() == ["new"] * 4 and np.isnan(again["previous_score"]).all()
    from leadscoring.serving.distributed import ModelPayload  # the dask engine's workers, by the same rule

    assert not ModelPayload.from_client(cfg, cfg.root).previous.empty
    assert ModelPayload.from_client(numbered, cfg.root).previous.empty


def test_every_path_carries_the_same_fields_for_the_same_lead(tiny, tmp_path):
    cfg, _, _, X, _ = tiny
    src, out = tmp_path / "leads.csv", tmp_path / "out"  # not beside the raw export (a protected folder)
    X.head(40).to_csv(src, index=False)
    out.mkdir()
    score_file(cfg, src, out / "s.csv", models_dir=cfg.root, scored_at=AT)
    score_file(cfg, src, out / "s.parquet", models_dir=cfg.root, scored_at=AT)
    csv = pd.read_csv(out / "s.csv", dtype={"Lead": str})
    parquet = pq.read_table(out / "s.parquet").to_pandas()
    client = TestClient(create_app(cfg, Scorer.load(cfg, cfg.root, with_segments=False)))
    lead = {k: (None if pd.isna(v) else v) for k, v in X.iloc[7].to_dict().items()}
    single = client.post("/score", json=lead).json()
    batch = client.post(
        "/score/batch", json=[{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in X.head(10).to_dict("records")]
    ).json()
    assert {**batch[7], "scored_at": AT} == {**single, "scored_at": AT}  # alone equals in a batch
    fields = [
        "probability",
        "score",
        "bucket",
        "recommended_action",
        "grade",
        "fit_score",
        "engagement_score",
        "previous_score",
        "trend",
        "model_version",
    ]
    assert list(csv.columns) == list(parquet.columns) == ["Lead", *fields[:7], "reasons", *fields[7:], "scored_at"]
    row_csv, row_pq = csv.iloc[7], parquet.iloc[7]
    for f in fields:
        a, b, c = row_csv[f], row_pq[f], single[f]
        assert (pd.isna(a) and pd.isna(b) and c is None) or (a == b == c), f
    assert [dict(r) for r in row_pq["reasons"]] == single["reasons"]
    assert row_csv["reasons"] == reason_text(single["reasons"])
    assert row_csv["scored_at"] == row_pq["scored_at"] == AT
    payload = crm_payloads(csv, "Lead", cfg.scoring.crm_fields)[7]
    assert payload["lead_id"] == "L007"
    assert payload["custom_fields"] == {
        "predictive_score": single["score"],
        "score_bucket": single["bucket"],
        "recommended_action": single["recommended_action"],
        "fit_score": single["fit_score"],
        "engagement_score": single["engagement_score"],
        "grade": single["grade"],
        "reasons": reason_text(single["reasons"]),
        "model_version": single["model_version"],
        "scored_at": AT,
        "trend": "new",
    }
    json.dumps(payload)  # JSON-ready


def test_crm_field_names_come_from_the_configuration(tiny, tmp_path):
    cfg, _, _, X, _ = tiny
    scores = Scorer.load(cfg, cfg.root, with_segments=False).score_frame(X.head(3), scored_at=AT)
    p = crm_payloads(scores, "Lead", {"score": "lead_score__c", "reasons": "why__c", "previous_score": "last__c"})
    assert list(p[0]["custom_fields"]) == ["lead_score__c", "why__c", "last__c"]
    assert isinstance(p[0]["custom_fields"]["why__c"], str) and p[0]["custom_fields"]["last__c"] is None


def test_a_model_saved_before_reasons_still_scores_with_plain_reasons(tiny, tmp_path):
    cfg, model, _, X, _ = tiny
    save_model(model, tmp_path / "old" / SCORE_MODEL, kind="lead_scoring_model")
    out = Scorer.load(cfg, tmp_path / "old", with_segments=False).score_columns(X.head(2), scored_at=AT)
    assert np.isnan(out["fit_score"]).all() and out["grade"].tolist()  # configured ranges
    assert all(r["evidence"] == "" for lead in out["reasons"] for r in lead)
    assert reason_text(out["reasons"][0]).startswith(("+ ", "- "))


def test_a_lead_without_reasons_has_an_empty_reasons_field_in_the_payload():
    scores = pd.DataFrame(
        {
            "Lead": ["L1"],
            "score": [40],
            "bucket": ["WARM"],
            "recommended_action": ["Email"],
            "reasons": [np.nan],
            "fit_score": [np.nan],
        }
    )  # as read back from CSV
    fields = crm_payloads(scores, "Lead")[0]["custom_fields"]
    assert fields["reasons"] == "" and fields["fit_score"] is None and fields["predictive_score"] == 40


@pytest.mark.parametrize(
    ("old", "names"), [("explain", ["global_importance"]), ("reasons", ["group_auc", "reason_book_for", "reason_text"])]
)
def test_notebooks_of_older_projects_still_import_their_explanations(old, names):
    """Notebooks copied by an earlier `init` import the modules merged into explanations.py."""
    import importlib
    import sys

    sys.modules.pop(f"leadscoring.training.{old}", None)
    with pytest.warns(DeprecationWarning, match="leadscoring.training.explanations"):
        module = importlib.import_module(f"leadscoring.training.{old}")
    from leadscoring.training import explanations

    assert all(getattr(module, n) is getattr(explanations, n) for n in names)


def test_a_linear_model_s_contributions_are_measured_from_the_average_lead(tiny):
    """A logistic regression's contribution of a variable is its coefficient times the lead's
    distance from the training mean (linear SHAP): over the training leads each variable's
    contributions average zero, so a lead at the usual level of a variable gets no reason from
    it, and the contributions add up to the lead's log-odds minus the average lead's."""
    _, model, _, X, _ = tiny
    contrib, _ = contributions(model, X)
    np.testing.assert_allclose(contrib.mean().to_numpy(), 0.0, atol=1e-9)
    p = model.predict_proba(X)[:, 1]
    logit = np.log(p / (1 - p))
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy(), logit - logit.mean(), atol=1e-6)
