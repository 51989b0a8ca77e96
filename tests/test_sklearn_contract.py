"""The feature steps and the segmenter keep scikit-learn's estimator contract, checked by
scikit-learn's own estimator checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import is_clusterer
from sklearn.cluster import KMeans
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from leadscoring.features.cleaning import LeadCleaner
from leadscoring.features.derived import ColumnSelector, LeadFeatures
from leadscoring.features.encoding import LeadEncoder
from leadscoring.training.segmentation import LeadSegmenter


def _excused(estimator: object) -> dict[str, str]:
    """Checks an estimator is excused from, and why: none for the steps as scikit-learn
    builds them by default; one for a step configured with named columns."""
    if isinstance(estimator, LeadCleaner) and estimator.numeric:
        return {
            "check_fit2d_1feature": "a cleaner configured for columns x0 and x1 refuses an input that "
            "lacks x1, naming it (KeyError), as it should"
        }
    return {}


@parametrize_with_checks(
    [LeadCleaner(), LeadFeatures(), ColumnSelector(), LeadEncoder(), LeadCleaner(numeric=["x0"], yes_no=["x1"], clip_quantile=0.9)],
    expected_failed_checks=_excused,
)
def test_feature_steps_keep_the_sklearn_contract(estimator, check):
    check(estimator)


def test_segmenter_is_a_clusterer():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(np.vstack([rng.normal(c, 0.2, (30, 2)) for c in (0, 5)]), columns=["a", "b"])
    y = np.r_[np.zeros(30), np.ones(30)]
    seg = LeadSegmenter(Pipeline([("scale", StandardScaler())]), k=2, seed=0)
    labels = seg.fit_predict(X, y)
    assert is_clusterer(seg) and set(labels) == {1, 2}
    assert (labels[30:] == 1).all()  # the group that converts is segment 1
    reference = KMeans(2, n_init=10, random_state=0).fit(StandardScaler().fit_transform(X))
    assert len(set(zip(labels, reference.labels_, strict=True))) == 2  # the same partition


def test_steps_give_frames_and_named_outputs():
    X = pd.DataFrame({"n": [1.0, 2.0, np.nan, 4.0], "c": ["a", "b", "a", None], "yn": ["Yes", "No", None, "Yes"]})
    clean = LeadCleaner(numeric=["n"], categorical=["c"], yes_no=["yn"]).fit(X)
    out = clean.transform(X)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(clean.get_feature_names_out())
    assert clean.set_output(transform="pandas").transform(X).equals(out)
    enc = LeadEncoder(numeric=["n"], categorical=["c"], yes_no=["yn"]).fit(out)
    assert list(enc.get_feature_names_out()) == ["n", "n missing", "c=Missing", "c=a", "c=b", "yn"]
    renamed = enc.get_feature_names_out(["n", "c", "yn"])
    assert list(renamed) == list(enc.get_feature_names_out())
    assert enc.transform(out).shape == (4, 6) and enc.n_features_in_ == 3


def test_cleaner_keeps_the_configured_column_order():
    """Output columns follow the roles' order, in every process (not a set's hash order)."""
    import subprocess
    import sys

    code = (
        "import pandas as pd; from leadscoring.features.cleaning import LeadCleaner; "
        "X = pd.DataFrame({c: ['a', 'b'] for c in 'qwertyuiop'}); "
        "print(list(LeadCleaner(categorical=list('qwertyuiop')).fit(X).get_feature_names_out()))"
    )
    for seed in ("1", "2", "3"):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": seed, "PATH": ""}
        ).stdout
        assert out.strip() == str(list("qwertyuiop"))
