"""Grades by score ranges, shares of leads and sales capacity, on hand-made score
distributions (issue "What a score tells the sales team", item 3)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscoring.config import GradesConfig, ScoringConfig
from leadscoring.errors import LeadDataError
from leadscoring.training.grades import (
    assign_grades,
    grade_bucket_conflict,
    grade_choices,
    grade_shares,
    grade_table,
    learn_grades,
    thresholds_from_shares,
    weekly_volume,
)

SCORES = np.arange(100)  # one lead per score 0..99


def test_ranges_are_the_configured_minimums():
    d = learn_grades(GradesConfig(), SCORES)
    assert d["min_scores"] == [80, 50, 25, 0] and d["method"] == "ranges"
    assert d["training_shares"] == [0.2, 0.3, 0.25, 0.25]
    assert assign_grades([100, 80, 79, 50, 49, 25, 24, 0], d).tolist() == ["A", "A", "B", "B", "C", "C", "D", "D"]


def test_shares_cut_the_training_distribution_without_exceeding_them():
    d = learn_grades(GradesConfig(shares=[0.1, 0.2, 0.3, 0.4]), SCORES)
    assert d["min_scores"] == [90, 70, 40, 0]
    assert d["training_shares"] == [0.1, 0.2, 0.3, 0.4]


def test_ties_stay_together_and_the_first_grade_never_exceeds_its_share():
    scores = np.array([90] * 5 + [80] * 10 + [10] * 85)  # 5 % at 90, 10 % at 80
    assert thresholds_from_shares(scores, [0.1, 0.9]) == [90, 0]  # 15 leads >= 80 would exceed 10: only the 90s
    assert thresholds_from_shares(scores, [0.15, 0.85]) == [80, 0]  # exactly 15 %: the 80s are in
    assert thresholds_from_shares(np.full(10, 50), [0.5, 0.5]) == [51, 0]  # all tied: grade A is empty


def test_capacity_sizes_the_first_grade_to_what_sales_can_call():
    grades = GradesConfig(calls_per_week=20, leads_per_week=100)
    assert grade_shares(grades) == pytest.approx([0.2, 0.8 / 3, 0.8 / 3, 0.8 / 3])
    d = learn_grades(grades, SCORES)
    assert d["min_scores"][0] == 80 and d["training_shares"][0] == 0.2
    assert d["calls_per_week"] == 20 and d["leads_per_week"] == 100
    with_shares = GradesConfig(calls_per_week=10, leads_per_week=100, shares=[0.1, 0.5, 0.25, 0.15])
    assert grade_shares(with_shares) == pytest.approx([0.1, 0.5, 0.25, 0.15])  # the rest in proportion
    assert grade_shares(GradesConfig(calls_per_week=500, leads_per_week=100))[0] == 1.0


def test_a_best_grade_below_the_top_bucket_is_a_warning():
    from leadscoring.config import Bucket

    buckets = [Bucket(name="HOT", min_score=36, action="Call now"), Bucket(name="WARM", min_score=18, action="Email")]
    buckets.append(Bucket(name="COLD", min_score=0, action="Newsletter"))
    text = grade_bucket_conflict({"names": ["A", "B"], "min_scores": [26, 0]}, buckets)
    assert text.startswith("grade A starts at score 26 but bucket HOT (Call now) at 36: grade-A leads scoring 26-35 get")
    assert "the action of bucket WARM (Email)" in text
    assert grade_bucket_conflict({"names": ["A", "B"], "min_scores": [40, 0]}, buckets) == ""
    three = grade_bucket_conflict({"names": ["A", "B"], "min_scores": [40, 0]}, ScoringConfig().buckets)  # 80 / 50 / 0
    assert "leads scoring 40-79 get the action of buckets WARM (Nurture with sales email) and COLD" in three
    assert grade_bucket_conflict(learn_grades(GradesConfig(), SCORES), ScoringConfig().buckets) == ""  # the defaults agree


def test_capacity_takes_the_weekly_volume_from_the_dates():
    dates = pd.Series(pd.date_range("2026-01-01", periods=300, freq="8h").astype(str))  # 100 days
    volume = weekly_volume(dates)
    assert volume == pytest.approx(300 / (299 * 8 / 24 / 7))
    d = learn_grades(GradesConfig(calls_per_week=volume / 4), SCORES, leads_per_week=volume)
    assert d["min_scores"][0] == 75
    with pytest.raises(LeadDataError, match="leads_per_week"):
        learn_grades(GradesConfig(calls_per_week=10), SCORES)
    with pytest.raises(LeadDataError, match="fewer than two dates"):
        weekly_volume(pd.Series(["2026-01-01", "not a date"]))


def test_grade_table_and_choices_count_calls_and_conversions():
    y = (SCORES >= 60).astype(int)  # 40 converters, all scoring 60+
    d = learn_grades(GradesConfig(min_scores=[75, 50, 25, 0]), SCORES)
    t = grade_table(y, SCORES, d)
    assert t["leads"].tolist() == [25, 25, 25, 25]
    assert t["conversions"].tolist() == [25, 15, 0, 0]
    assert t["conversion_rate"].tolist() == [1.0, 0.6, 0.0, 0.0]
    assert t["share_of_conversions"].tolist() == [0.625, 1.0, 1.0, 1.0]
    choices = grade_choices(y, SCORES, {"ranges": d, "top 10 %": learn_grades(GradesConfig(shares=[0.1, 0.2, 0.3, 0.4]), SCORES)})
    assert choices["calls"].tolist() == [25, 10] and choices["conversions_reached"].tolist() == [25, 10]
    assert choices["share_of_conversions"].tolist() == [0.625, 0.25]


def test_grade_configuration_is_checked():
    with pytest.raises(ValueError, match="summing to 1"):
        GradesConfig(shares=[0.5, 0.2, 0.2, 0.2])
    with pytest.raises(ValueError, match="min_scores"):
        GradesConfig(names=["A", "B"], min_scores=[50, 10])
    assert GradesConfig(calls_per_week=5).method == "capacity"


def test_shares_are_learned_as_new_leads_score():
    """A boosted model spreads the scores of the leads it learned from: grade A sized on them to
    10 % holds about 7 % of new leads. Sized on out-of-fold scores it holds nearer 10 %."""
    from sklearn.model_selection import StratifiedKFold
    from xgboost import XGBClassifier

    from leadscoring.training.grades import new_lead_probabilities

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(6000, 6)), columns=[f"x{i}" for i in range(6)])
    logit = X["x0"] + 0.7 * X["x1"] - 0.5 * X["x2"] + 0.3 * X["x3"] * X["x4"] - 1
    y = pd.Series((rng.random(6000) < 1 / (1 + np.exp(-logit))).astype(int))
    train, new = slice(0, 3000), slice(3000, None)
    model = XGBClassifier(n_estimators=300, max_depth=5, learning_rate=0.05, n_jobs=1, random_state=0).fit(X[train], y[train])

    def score(p: np.ndarray) -> np.ndarray:
        return np.rint(100 * p).astype(int)

    new_scores = score(model.predict_proba(X[new])[:, 1])
    own = thresholds_from_shares(score(model.predict_proba(X[train])[:, 1]), [0.1, 0.9])[0]
    out_of_fold = score(new_lead_probabilities(model, X[train], y[train], StratifiedKFold(5, shuffle=True, random_state=0)))
    learned = thresholds_from_shares(out_of_fold, [0.1, 0.9])[0]
    held_own, held = (new_scores >= own).mean(), (new_scores >= learned).mean()
    assert held_own < 0.08 and abs(held - 0.1) < abs(held_own - 0.1) - 0.005


def test_each_grade_is_told_the_actions_of_the_buckets_its_scores_fall_in():
    """The client summary's "what to do" per grade: the buckets' actions (what each score
    output carries), never an advice of its own that a lead's action contradicts."""
    from leadscoring.config import Bucket
    from leadscoring.training.grades import grade_actions

    buckets = [
        Bucket(name="HOT", min_score=36, action="Call now"),
        Bucket(name="WARM", min_score=18, action="Email"),
        Bucket(name="COLD", min_score=0, action="Newsletter"),
    ]
    # shares-learned grades, rate-drafted buckets
    drafted = grade_actions({"names": list("ABCD"), "min_scores": [26, 15, 8, 0]}, buckets)
    assert drafted == [
        "Call now (HOT, scores 36-100); Email (WARM, scores 26-35)",
        "Email (WARM, scores 18-25); Newsletter (COLD, scores 15-17)",
        "Newsletter (COLD)",
        "Newsletter (COLD)",
    ]
    assert grade_actions({"names": ["A", "B", "C"], "min_scores": [40, 40, 0]}, buckets)[1] == "-"  # an empty grade
    assert grade_actions({"names": ["A", "B"]}, buckets) == ["-", "-"]  # no thresholds saved
    defaults = grade_actions(learn_grades(GradesConfig(), SCORES), ScoringConfig().buckets)
    assert defaults == ["Call immediately (HOT)", "Nurture with sales email (WARM)", *["Automated marketing (COLD)"] * 2]
