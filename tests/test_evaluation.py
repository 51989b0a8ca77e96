import numpy as np
import pytest

from leadscoring.training.evaluation import capacity_table, classification_metrics, confusion_at_thresholds, gain_at, gains_table

# Hand-worked: 10 leads, 4 converters. Sorted by score the outcomes are 1,1,0,1,1,0,0,0,0,0.
Y = [0, 1, 0, 1, 0, 0, 1, 0, 1, 0]
S = [0.2, 0.9, 0.1, 0.8, 0.3, 0.05, 0.35, 0.15, 0.6, 0.7]


def test_gains_table_by_hand():
    g = gains_table(Y, S, groups=5)
    # groups of 2: (1,1) (0,1) (1,0) (0,0) (0,0); base rate 0.4
    assert g["conversions"].tolist() == [2, 1, 1, 0, 0]
    np.testing.assert_allclose(g["gain"], [0.5, 0.75, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(g["lift"], [2.5, 1.25, 1.25, 0.0, 0.0])
    np.testing.assert_allclose(g["cum_lift"], [2.5, 1.875, (4 / 6) / 0.4, 1.25, 1.0])


def test_gain_at_and_capacity():
    assert gain_at(Y, S, 0.3) == pytest.approx(0.5)
    cap = capacity_table(Y, {"ml": S}, [2, 4])
    assert cap["ml"].tolist() == [2, 3]
    assert cap["random"].tolist() == [0.8, 1.6]
    assert cap["threshold_ml"].tolist() == [0.8, 0.6]


def test_confusion_and_metrics():
    c = confusion_at_thresholds(Y, S, [0.5]).iloc[0]
    assert (c["tp"], c["fp"], c["fn"], c["tn"]) == (3, 1, 1, 5)
    m = classification_metrics(Y, S)
    assert m["roc_auc"] == pytest.approx(22 / 24)
    assert m["n"] == 10 and m["base_rate"] == 0.4


def test_leads_tied_at_the_cut_count_at_their_rate_not_in_file_order():
    """50 leads tied at one score, their 10 conversions listed first, 20 calls: 4 expected, not 10."""
    y = np.array([1] * 10 + [0] * 40)
    score = np.full(50, 5.0)
    assert capacity_table(y, {"rules": score}, [20])["rules"].iloc[0] == pytest.approx(4.0)
    assert gain_at(y, score, 0.4) == pytest.approx(0.4)
    # two tiers: 10 leads above the tie (5 convert), 40 tied (8 convert), 30 calls: 5 + 20 x 8/40
    y2 = np.array([1] * 5 + [0] * 5 + [1] * 8 + [0] * 32)
    s2 = np.array([9.0] * 10 + [5.0] * 40)
    assert capacity_table(y2, {"rules": s2}, [30])["rules"].iloc[0] == pytest.approx(9.0)
    table = gains_table(y2, s2, groups=5)
    assert table["conversions"].tolist() == pytest.approx([5.0, 2.0, 2.0, 2.0, 2.0]) and table["gain"].iloc[-1] == 1.0


def test_probabilities_that_miss_the_conversion_rate_of_new_leads_are_named():
    from leadscoring.training.evaluation import calibration_in_the_large

    moved = calibration_in_the_large(0.151, 0.116, 1000, by_date=True)  # 3.5 standard errors, 30 % off
    assert "convert at 15.1 % where the model expects 11.6 %" in moved and "newest leads convert more" in moved
    assert "read low by about 30 %" in moved
    assert "off for leads it never saw" in calibration_in_the_large(0.30, 0.40, 1000, by_date=False)
    assert calibration_in_the_large(0.124, 0.116, 1000, by_date=True) == ""  # within chance
    assert calibration_in_the_large(0.38, 0.37, 100_000, by_date=True) == ""  # beyond chance but under 15 % off
    assert calibration_in_the_large(None, 0.1, 10, by_date=True) == ""  # a manifest without the figure
