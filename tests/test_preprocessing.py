import numpy as np
import pandas as pd
import pytest

from leadscoring.features.cleaning import LeadCleaner
from leadscoring.features.columns import as_frame
from leadscoring.features.derived import LeadFeatures
from leadscoring.features.encoding import LeadEncoder
from leadscoring.training.pipeline import preparation_steps


def _cleaner(**kw):
    base = dict(
        numeric=["n"], categorical=["c"], yes_no=["yn", "const"], missing_values=["Select"], yes_values=["Yes"], clip_quantile=0.75
    )
    base.update(kw)
    return LeadCleaner(**base)


@pytest.fixture()
def frame():
    return pd.DataFrame(
        {
            "n": [1.0, 2.0, 3.0, 4.0, 100.0],
            "c": ["Google", "google ", "Chat", "Select", None],
            "yn": ["Yes", "No", "yes", None, "No"],
            "const": ["No"] * 5,
            "id": list("abcde"),
        }
    )


def test_cleaner_rules(frame):
    cl = _cleaner().fit(frame)
    out = as_frame(cl.transform(frame))
    assert list(out.columns) == ["n", "c", "yn"]  # id dropped, constant dropped
    assert cl.constant_ == ["const"]
    assert out["c"].tolist()[:3] == ["Google", "Google", "Chat"]  # spelling merged
    assert out["c"].isna().tolist()[3:] == [True, True]  # placeholder and blank -> missing
    assert out["yn"].tolist()[:3] == [1.0, 0.0, 1.0] and np.isnan(out["yn"].iloc[3])
    assert out["n"].max() == pytest.approx(frame["n"].quantile(0.75))  # clipped at learned bound


def test_cleaner_statistics_come_from_fit_only(frame):
    cl = _cleaner().fit(frame)
    one = pd.DataFrame({"n": [1e6], "c": ["GOOGLE"], "yn": ["Yes"], "const": ["Yes"], "id": ["z"]})
    out = as_frame(cl.transform(one))
    assert out["n"].iloc[0] == pytest.approx(frame["n"].quantile(0.75))
    assert out["c"].iloc[0] == "Google"
    assert "const" not in out.columns


def test_features_ratio_and_product():
    X = pd.DataFrame({"t": [100.0, 50.0, np.nan], "v": [4.0, 0.0, 2.0]})
    f = LeadFeatures(products={"tv": ("t", "v")}, ratios={"tpv": ("t", "v")}).fit(X)
    out = as_frame(f.transform(X))
    assert out["tv"].tolist()[:2] == [400.0, 0.0]
    assert out["tpv"].tolist()[:2] == [25.0, 0.0]  # zero denominator -> 0
    assert np.isnan(out["tpv"].iloc[2])


def test_encoder_by_hand():
    X = pd.DataFrame({"n": [1.0, 3.0, np.nan, 5.0], "c": ["a"] * 2 + ["rare", None], "y": [1.0, np.nan, 0.0, 1.0]})
    X = pd.concat([X] * 10, ignore_index=True)
    X.loc[0, "c"], X.loc[1, "c"] = "b", "tiny"  # 1 of 40 each = 2.5 % < 3 %: grouped as Other
    enc = LeadEncoder(["n"], ["c"], ["y"], rare_min_share=0.03, scale=False).fit(X)
    assert enc.feature_labels_ == ["n", "n missing", "c=Missing", "c=Other", "c=a", "c=rare", "y"]
    assert enc.feature_sources_ == ["n", "n", "c", "c", "c", "c", "y"]
    out = enc.transform(pd.DataFrame({"n": [np.nan, 2.0], "c": ["new", None], "y": [np.nan, 1.0]}))
    # median of n over fit rows is 3; unseen level -> Other; missing -> Missing; yes/no missing -> 0
    np.testing.assert_array_equal(out, [[3, 1, 0, 1, 0, 0, 0], [2, 0, 1, 0, 0, 0, 1]])
    scaled = LeadEncoder(["n"], [], [], scale=True).fit(X).transform(X)
    assert abs(scaled[:, 0].mean()) < 1e-12 and scaled[:, 0].std() == pytest.approx(1.0)


def test_single_lead_equals_batch(cfg, sample):
    from sklearn.linear_model import LogisticRegression

    from leadscoring.training.pipeline import build_pipeline

    X, y = sample.drop(columns="compra"), sample["compra"]
    pipe = build_pipeline(cfg, LogisticRegression(max_iter=1000)).fit(X, y)
    batch = pipe.predict_proba(X.head(20))[:, 1]
    alone = np.array([pipe.predict_proba(X.iloc[[i]])[:, 1][0] for i in range(20)])
    np.testing.assert_allclose(alone, batch, atol=1e-12)
    gap = X.head(20).assign(visitas_total=np.nan, ocupacion=np.nan)
    assert np.isfinite(pipe.predict_proba(gap)).all()


def test_preparation_drops_post_contact_when_configured(cfg, sample):
    pre = cfg.model_copy(update={"data": cfg.data.model_copy(update={"use_post_contact_fields": False})})
    cleaner = preparation_steps(pre)[0][1].fit(sample)
    assert not set(cfg.data.post_contact) & set(cleaner.feature_names_out_)


def test_map_unique_small_and_large_paths_agree():
    from leadscoring.ingest.values import map_unique

    values = np.array(["a", None, " b", np.nan, "a"] * 40, dtype=object)

    def fn(v):
        return "MISSING" if v is None else v.strip().upper()

    small = np.concatenate([map_unique(values[i : i + 5], fn) for i in range(0, len(values), 5)])
    large = map_unique(values, fn)
    assert small.tolist() == large.tolist()
    assert large.tolist()[:5] == ["A", "MISSING", "B", "MISSING", "A"]
