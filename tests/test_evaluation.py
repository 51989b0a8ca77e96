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
