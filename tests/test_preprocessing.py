import numpy as np
import pandas as pd
import pytest

from leadscoring.modeling import preparation_steps
from leadscoring.preprocessing import LeadCleaner, LeadFeatures, RareLevelGrouper


def _cleaner(**kw):
    base = dict(numeric=["n"], categorical=["c"], yes_no=["yn", "const"], missing_values=["Select"],
                yes_values=["Yes"], clip_quantile=0.75)
    base.update(kw)
    return LeadCleaner(**base)


@pytest.fixture()
def frame():
    return pd.DataFrame({
        "n": [1.0, 2.0, 3.0, 4.0, 100.0],
        "c": ["Google", "google ", "Chat", "Select", None],
        "yn": ["Yes", "No", "yes", None, "No"],
        "const": ["No"] * 5,
        "id": list("abcde"),
    })


def test_cleaner_rules(frame):
    cl = _cleaner().fit(frame)
    out = cl.transform(frame)
    assert list(out.columns) == ["n", "c", "yn"]  # id dropped, constant dropped
    assert cl.constant_ == ["const"]
    assert out["c"].tolist()[:3] == ["Google", "Google", "Chat"]  # spelling merged
    assert out["c"].isna().tolist()[3:] == [True, True]  # placeholder and blank -> missing
    assert out["yn"].tolist()[:3] == [1.0, 0.0, 1.0] and np.isnan(out["yn"].iloc[3])
    assert out["n"].max() == pytest.approx(frame["n"].quantile(0.75))  # clipped at learned bound


def test_cleaner_statistics_come_from_fit_only(frame):
    cl = _cleaner().fit(frame)
    one = pd.DataFrame({"n": [1e6], "c": ["GOOGLE"], "yn": ["Yes"], "const": ["Yes"], "id": ["z"]})
    out = cl.transform(one)
    assert out["n"].iloc[0] == pytest.approx(frame["n"].quantile(0.75))
    assert out["c"].iloc[0] == "Google"
    assert "const" not in out.columns


def test_features_ratio_and_product():
    X = pd.DataFrame({"t": [100.0, 50.0, np.nan], "v": [4.0, 0.0, 2.0]})
    f = LeadFeatures(products={"tv": ("t", "v")}, ratios={"tpv": ("t", "v")}).fit(X)
    out = f.transform(X)
    assert out["tv"].tolist()[:2] == [400.0, 0.0]
    assert out["tpv"].tolist()[:2] == [25.0, 0.0]  # zero denominator -> 0
    assert np.isnan(out["tpv"].iloc[2])


def test_rare_and_unseen_levels():
    X = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 49 + ["rare"] + [None]})
    g = RareLevelGrouper(min_share=0.05).fit(X)
    out = g.transform(pd.DataFrame({"c": ["a", "rare", "new", None]}))
    assert out["c"].tolist() == ["a", "Other", "Other", "Missing"]


def test_single_lead_equals_batch(cfg, sample):
    from sklearn.linear_model import LogisticRegression

    from leadscoring.modeling import build_pipeline

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
