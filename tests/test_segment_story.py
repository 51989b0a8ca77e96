"""Segment and score, one story: the per-segment score table and its plain-English reading,
checked on hand-made leads whose numbers are worked out in the comments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscoring.training.segment_story import (
    SEGMENT_VS_SCORE,
    bucket_share_column,
    segment_score_story,
    segment_score_table,
    top_columns,
)

ORDER = ["HOT", "WARM", "COLD"]  # HOT >= 80, WARM >= 50, COLD below


def _bucket(scores: list[int]) -> list[str]:
    return ["HOT" if s >= 80 else "WARM" if s >= 50 else "COLD" for s in scores]


# A converts well (3 of 5) and holds 3 HOT leads; B converts poorly (1 of 5) but holds one
# HOT lead (81, not converted); C (1 of 2) holds no HOT lead. Base rate 5 / 12.
SEGMENTS = ["A"] * 5 + ["B"] * 5 + ["C"] * 2
SCORES = [90, 85, 82, 60, 40, 81, 30, 20, 10, 5, 70, 55]
Y = [1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0]


def _table(y: list[int] | None = Y, **kw) -> pd.DataFrame:
    return segment_score_table(np.array(SEGMENTS), np.array(SCORES), np.array(_bucket(SCORES)), ORDER, y, **kw)


def test_table_numbers_by_hand():
    t = _table().set_index("segment")
    assert list(t.index) == ["A", "B", "C"]
    assert t["leads"].tolist() == [5, 5, 2]
    np.testing.assert_allclose(t["share"], [5 / 12, 5 / 12, 2 / 12])
    np.testing.assert_allclose(t["conversion_rate"], [0.6, 0.2, 0.5])
    # A sorted: 40 60 82 85 90; B: 5 10 20 30 81; C: 55 70 (linear interpolation: 55 + 0.25 × 15)
    np.testing.assert_allclose(t["score_p25"], [60, 10, 58.75])
    np.testing.assert_allclose(t["score_median"], [82, 20, 62.5])
    np.testing.assert_allclose(t["score_p75"], [85, 30, 66.25])
    np.testing.assert_allclose(t["share_HOT"], [0.6, 0.2, 0.0])
    np.testing.assert_allclose(t["share_WARM"], [0.2, 0.0, 1.0])
    np.testing.assert_allclose(t["share_COLD"], [0.2, 0.8, 0.0])
    assert t["HOT_leads"].tolist() == [3, 1, 0]
    np.testing.assert_allclose(t["HOT_mean_score"], [(90 + 85 + 82) / 3, 81, np.nan])
    np.testing.assert_allclose(t["HOT_conversion_rate"], [1.0, 0.0, np.nan])
    np.testing.assert_allclose(t["share_of_all_HOT"], [0.75, 0.25, 0.0])
    assert list(t.columns) == [
        "leads",
        "share",
        "conversion_rate",
        "score_p25",
        "score_median",
        "score_p75",
        "share_HOT",
        "share_WARM",
        "share_COLD",
        "HOT_leads",
        "HOT_mean_score",
        "HOT_conversion_rate",
        "share_of_all_HOT",
    ]
    assert bucket_share_column("WARM") == "share_WARM" and top_columns("HOT")["count"] == "HOT_leads"


def test_story_names_the_exception_with_its_count_and_rates():
    story = segment_score_story(_table(), "HOT", base_rate=5 / 12)
    assert story.startswith(SEGMENT_VS_SCORE)
    assert "Of the 4 HOT leads, 3 (75 %) are in 'A'. 'C' holds none." in story
    # weak: conversion at most 0.7 × 41.7 % = 29 %, so B (20 %) is weak and A, C are not
    assert "A segment is weak when it converts at most 29.2 %, 70 % of the base rate of 41.7 %." in story
    assert (
        "- 1 lead of segment 'B' (20 % of the segment; conversion 20 %, median score 20) is HOT: its own data, "
        "not the segment's profile, earns the score. Call it, but expect a lower hit rate than the HOT leads of "
        "'A' (mean score 81 vs 86; converted 0 % vs 100 %)."
    ) in story
    assert "segment 'A'" not in story and "segment 'C'" not in story
    assert segment_score_story(_table(), "HOT") == story  # base rate by default: the table's own, 5 / 12


def test_scoring_only_story_compares_median_and_mean_scores():
    t = _table(y=None)
    assert "conversion_rate" not in t.columns and "HOT_conversion_rate" not in t.columns
    story = segment_score_story(t, "HOT", base_rate=None)
    # typical median (5 × 82 + 5 × 20 + 2 × 62.5) / 12 = 52.9; weak at most 0.7 × 52.9 = 37: only B
    assert "has a median score of at most 37, 70 % of the typical median score of 53." in story
    assert (
        "1 lead of segment 'B' (20 % of the segment; median score 20) is HOT: its own data, not the segment's "
        "profile, earns the score. Call it, but expect a lower hit rate than the HOT leads of 'A' "
        "(mean score 81 vs 86)."
    ) in story
    assert "converted" not in story


def test_exception_with_a_hit_rate_no_lower_and_the_only_top_leads():
    y = [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1]  # A: 1 of 5, none of its HOT; B: 1 of 5, its HOT lead; C: 2 of 2
    story = segment_score_story(_table(y=y), "HOT")
    # base 4 / 12, weak at most 23 %: A (20 %) and B (20 %); A's 3 HOT leads compared with B's and back
    assert "- 3 leads of segment 'A' (60 % of the segment; conversion 20 %, median score 82) are HOT" in story
    lower = "Call them, but expect a lower hit rate than the HOT leads of 'B' (mean score 86 vs 81; converted 0 % vs 100 %)."
    assert lower in story
    assert "Call it: expect a hit rate no lower than the HOT leads of 'A' (mean score 81 vs 86; converted 100 % vs 0 %)." in story
    alone = segment_score_table(["A", "A", "B", "B"], [85, 10, 60, 70], ["HOT", "COLD", "WARM", "WARM"], ORDER, [0, 0, 1, 1])
    assert "It is the only HOT lead: call it." in segment_score_story(alone, "HOT")


def test_no_weak_segment_and_weak_segment_without_top_leads():
    story = segment_score_story(_table(), "HOT", base_rate=0.2)  # weak at most 14 %: none
    assert (
        "No segment is weak (a weak segment converts at most 14.0 %, 70 % of the base rate of 20.0 %), so no HOT lead "
        "goes against its segment."
    ) in story
    y = [1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0]  # C converts 0 of 2 and holds no HOT lead; B converts 40 %
    assert "No HOT lead sits in a weak segment (one that converts at most 29.2 %" in segment_score_story(_table(y=y), "HOT")


def test_single_segment():
    t = segment_score_table(["Only"] * 4, [90, 60, 30, 10], _bucket([90, 60, 30, 10]), ORDER, [1, 0, 0, 0])
    assert t["leads"].tolist() == [4] and t["share_of_all_HOT"].tolist() == [1.0]
    story = segment_score_story(t, "HOT")
    assert "All 4 leads fall in one segment ('Only')" in story and "Exceptions" not in story


def test_no_top_bucket_lead_and_empty_buckets():
    scores = [60, 40, 30, 20]
    t = segment_score_table(["A", "A", "B", "B"], scores, _bucket(scores), ORDER, [1, 0, 0, 0])
    assert t["share_HOT"].tolist() == [0.0, 0.0] and t["share_of_all_HOT"].tolist() == [0.0, 0.0]
    assert t["HOT_leads"].tolist() == [0, 0] and t["HOT_mean_score"].isna().all()
    assert t["share_WARM"].tolist() == [0.5, 0.0] and t["share_COLD"].tolist() == [0.5, 1.0]
    assert "No lead reaches the top bucket 'HOT'" in segment_score_story(t, "HOT")
    empty = segment_score_table([], [], [], ORDER, [])
    assert empty.empty and "share_of_all_HOT" in empty.columns
    assert segment_score_story(empty, "HOT").endswith("There are no leads to describe.")


def test_any_bucket_names_row_order_and_checks():
    names = ["Priority", "Later"]
    t = segment_score_table(["x", "y", "y"], [75, 75, 10], ["Priority", "Priority", "Later"], names, order=["y", "x"])
    assert t["segment"].tolist() == ["y", "x"] and t["share_of_all_Priority"].tolist() == [0.5, 0.5]
    assert "Of the 2 Priority leads, 1 (50 %) is in 'y'." in segment_score_story(t, "Priority")  # half is enough
    t3 = segment_score_table(list("xyzz"), [75, 75, 75, 10], ["Priority"] * 3 + ["Later"], names)
    assert "Of the 3 Priority leads, 1 (33 %) is in 'x' and 1 (33 %) in 'y'." in segment_score_story(t3, "Priority")
    with pytest.raises(ValueError, match="not in bucket_order"):
        segment_score_table(["x"], [75], ["HOT"], names)
    with pytest.raises(ValueError, match="one value per lead"):
        segment_score_table(["x", "y"], [75], ["Later"], names)
    with pytest.raises(ValueError, match="no top-bucket columns"):
        segment_score_story(t, "HOT", None)


def test_plot_rows_follow_the_order_and_count_top_bucket_leads():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from leadscoring.notebook.plots import scores_by_segment

    fig = scores_by_segment(SEGMENTS, SCORES, ["C", "A", "B"], [("HOT", 80), ("WARM", 50), ("COLD", 0)])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["C", "A", "B"]
    texts = [t.get_text() for t in ax.texts]
    assert texts == [" HOT ≥ 80", " WARM ≥ 50", "0 HOT", "3 HOT", "1 HOT"]
    plt.close(fig)
