"""The lean scoring paths (used by the service and batch scoring) against the reference
scikit-learn calls they replace: the same numbers (within LEAN_TOLERANCE, which absorbs
last-bit differences between CPUs), or the reference is used."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from leadscoring.ingest.split import split_xy
from leadscoring.serving.fast import FAST_PATHS_ENV, LEAN_TOLERANCE, ProbabilityFunction, segment_numbers, shared_steps
from leadscoring.serving.scorer import Scorer
from leadscoring.training.compare import calibrated
from leadscoring.training.explanations import prepare
from leadscoring.training.pipeline import build_pipeline, xgb_classifier
from leadscoring.training.segmentation import LeadSegmenter, segment_features


@pytest.fixture(scope="module")
def xy(cfg, sample):
    return split_xy(sample, cfg)


def _fit(cfg, X, y, method: str | None, estimator=None, scale: bool = False):
    base = build_pipeline(cfg, estimator if estimator is not None else xgb_classifier(0, n_estimators=40), scale=scale)
    if method is None:
        return base.fit(X, y)
    return calibrated(base, method, StratifiedKFold(3, shuffle=True, random_state=0)).fit(X, y)


@pytest.mark.parametrize("method", [None, "isotonic", "sigmoid"])
def test_lean_probability_matches_predict_proba(cfg, leads, xy, method):
    X, y = xy
    model = _fit(cfg, X, y, method)
    fn = ProbabilityFunction(model.steps[-1][1])
    assert fn.lean
    _, encoded = prepare(model, leads.drop(columns="compra"))  # 7,274 leads it was not trained on (mostly)
    expected = model.steps[-1][1].predict_proba(encoded)[:, 1]
    close = {"rtol": 0, "atol": LEAN_TOLERANCE}
    np.testing.assert_allclose(fn(encoded), expected, **close)
    np.testing.assert_allclose(fn(encoded, fn.matrix(encoded)), expected, **close)
    np.testing.assert_allclose(fn(encoded[:1]), expected[:1], **close)
    again = pickle.loads(pickle.dumps(fn))  # rebuilt and re-checked where unpickled
    assert again.lean
    np.testing.assert_allclose(again(encoded[:50]), expected[:50], **close)


def test_a_last_bit_difference_keeps_the_lean_path_and_a_real_one_does_not(cfg, xy):
    """Another CPU may differ in the last bit of exp(); that is within tolerance. A
    deviation of 1e-9 is a different function and sends scoring to predict_proba."""
    X, y = xy
    model = _fit(cfg, X, y, "sigmoid")

    def skewed(by: float) -> type[ProbabilityFunction]:
        class Skewed(ProbabilityFunction):
            def _set_up_lean(self, step):
                ok = super()._set_up_lean(step)
                calibrate = self._calibrate
                self._calibrate = lambda p: np.nextafter(calibrate(p), 2.0) if by == 0 else calibrate(p) + by
                return ok

        return Skewed

    assert skewed(0)(model.steps[-1][1]).lean  # one ulp up: accepted
    assert not skewed(1e-9)(model.steps[-1][1]).lean


def test_other_models_and_a_mismatch_use_predict_proba(cfg, xy, caplog):
    X, y = xy
    logistic = _fit(cfg, X, y, None, LogisticRegression(max_iter=2000), scale=True)
    fn = ProbabilityFunction(logistic.steps[-1][1])
    assert not fn.lean and fn.matrix(np.zeros((1, 3))) is None
    _, encoded = prepare(logistic, X)
    np.testing.assert_array_equal(fn(encoded), logistic.steps[-1][1].predict_proba(encoded)[:, 1])

    class OffByOneInABillion(ProbabilityFunction):
        def _set_up_lean(self, step):
            ok = super()._set_up_lean(step)
            calibrate = self._calibrate
            self._calibrate = lambda p: calibrate(p) * (1 + 1e-9)
            return ok

    model = _fit(cfg, X, y, "isotonic")
    with caplog.at_level("WARNING"):
        fn = OffByOneInABillion(model.steps[-1][1])
    assert not fn.lean and "does not reproduce predict_proba" in caplog.text
    _, encoded = prepare(model, X)
    np.testing.assert_array_equal(fn(encoded), model.steps[-1][1].predict_proba(encoded)[:, 1])


def test_segment_predict_equals_kmeans_predict(cfg, leads, xy):
    X, y = xy
    seg = LeadSegmenter(segment_features(cfg), k=4, seed=3).fit(X, y)
    everyone = leads.drop(columns="compra")
    reference = np.array([seg.relabel_[int(r)] for r in seg.kmeans_.predict(seg.features_.transform(everyone))])
    np.testing.assert_array_equal(seg.predict(everyone), reference)  # plain KMeans.predict
    np.testing.assert_array_equal(segment_numbers(seg, everyone), reference)  # the shortcut
    cleaned = seg.features_.steps[0][1].transform(everyone)
    np.testing.assert_array_equal(segment_numbers(seg, cleaned, skip=1), reference)
    assert seg.fit_predict(X, y).tolist() == seg.labels_.tolist() == seg.predict(X).tolist()  # ClusterMixin


def test_scorer_shares_the_cleaning_and_limits_threads(cfg, leads, small_models):
    scorer = Scorer.load(cfg, small_models)
    # cleaning and derived features are the same fitted steps in both models; selection differs
    assert shared_steps(scorer.model, scorer.segmenter.features_) == scorer._shared == 2
    X = leads.drop(columns="compra").head(200)
    at = "2026-05-01T09:00:00Z"  # one time for both scorings: the clock may tick between them
    out = scorer.score_columns(X, scored_at=at)
    alone = Scorer.load(cfg, small_models)
    alone._shared = 0  # no sharing: every model runs its own steps
    ref = alone.score_columns(X, scored_at=at)
    for key in ref:
        np.testing.assert_array_equal(out[key], ref[key])
    np.testing.assert_array_equal(out["probability"], np.round(scorer.model.predict_proba(X)[:, 1], 6))
    np.testing.assert_array_equal(out["segment"], scorer.segmenter.segment_names(X))
    assert scorer.limit_threads(1) is scorer
    booster = scorer.model.steps[-1][1].calibrated_classifiers_[0].estimator.get_booster()
    assert '"nthread":"1"' in booster.save_config().replace(" ", "")


def test_one_switch_turns_every_shortcut_off_with_the_same_scores(cfg, leads, small_models, monkeypatch):
    X = leads.drop(columns="compra").sample(300, random_state=1)
    fast = Scorer.load(cfg, small_models)
    monkeypatch.setenv(FAST_PATHS_ENV, "0")
    plain = Scorer.load(cfg, small_models)
    assert fast.fast and fast.probability.lean and fast._shared == 2
    assert not plain.fast and plain.probability is None and plain._shared == 0
    a, b = fast.score_columns(X, scored_at="t"), plain.score_columns(X, scored_at="t")
    np.testing.assert_allclose(a["probability"], b["probability"], rtol=0, atol=1e-6)
    assert list(a) == list(b)
    for key in a:
        if key != "probability":
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_shared_steps_stop_at_the_first_difference(cfg, xy):
    X, y = xy
    a = _fit(cfg, X, y, None)
    assert shared_steps(a, a) == len(a.steps)
    encode_at = [n for n, _ in a.steps].index("encode")
    assert shared_steps(a, copy.deepcopy(a)) >= encode_at + 1  # equal fitted state, not only identity
    other_encoder = copy.deepcopy(a)
    other_encoder.named_steps["encode"].median_["visitas_total"] += 1.0
    assert shared_steps(a, other_encoder) == encode_at
    other_cleaning = copy.deepcopy(a)
    lo, hi = other_cleaning.steps[0][1].clip_["visitas_total"]
    other_cleaning.steps[0][1].clip_["visitas_total"] = (lo, hi + 1.0)
    assert shared_steps(a, other_cleaning) == 0
