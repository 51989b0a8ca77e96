import numpy as np
import pandas as pd
import pytest

from leadscoring.training.segmentation import (
    LeadSegmenter,
    choose_k,
    name_segments,
    pick_k,
    profile_segments,
    segment_features,
    segmentation_columns,
)


def test_segmentation_excludes_target_and_post_contact(cfg):
    cols = segmentation_columns(cfg)
    assert cfg.data.target_column not in cols
    assert not set(cfg.data.post_contact) & set(cols)


def test_segmentation_leaves_out_what_the_leakage_audit_blocks(cfg, sample):
    """A field the audit keeps out of the models is no segmentation input either."""
    blocked = segmentation_columns(cfg)[0]
    assert blocked not in segmentation_columns(cfg, [blocked])
    with_product = cfg.model_copy(update={"features": cfg.features.model_copy(update={"products": {"p": (blocked, "x")}})})
    assert "p" in segmentation_columns(with_product) and "p" not in segmentation_columns(with_product, [blocked])
    features = segment_features(cfg, [blocked]).fit(sample.drop(columns="compra"))
    assert blocked not in features.named_steps["select"].feature_names_out_


def test_segments_are_reproducible_and_ordered_by_conversion(cfg, sample):
    X, y = sample.drop(columns="compra"), sample["compra"]
    a = LeadSegmenter(segment_features(cfg), k=3, seed=7).fit(X, y).predict(X)
    b = LeadSegmenter(segment_features(cfg), k=3, seed=7).fit(X, y).predict(X)
    np.testing.assert_array_equal(a, b)
    rates = pd.Series(y.to_numpy()).groupby(a).mean()
    assert list(rates.index) == [1, 2, 3] and rates.is_monotonic_decreasing
    one = LeadSegmenter(segment_features(cfg), k=3, seed=7).fit(X, y)
    assert one.predict(X.iloc[[5]])[0] == a[5]  # a lead alone lands in its batch segment


def test_choose_k_finds_three_planted_groups():
    """Three far-apart blobs: k = 3 has the best silhouette and is perfectly stable across
    seeds; k = 2 must merge two blobs, so its silhouette is lower."""
    rng = np.random.default_rng(0)
    Z = np.vstack([rng.normal(c, 0.3, size=(100, 2)) for c in ((0, 0), (10, 0), (0, 10))])
    table = choose_k(Z, (2, 4), seeds=[0, 1, 2])
    assert table["k"].tolist() == [2, 3, 4]
    assert table["inertia"].is_monotonic_decreasing
    by_k = table.set_index("k")
    assert by_k.loc[3, "stability_ari"] == 1.0 and by_k.loc[3, "silhouette"] > 0.85
    assert by_k.loc[3, "silhouette"] > by_k.loc[2, "silhouette"] and by_k.loc[3, "silhouette"] > by_k.loc[4, "silhouette"]
    assert pick_k(table) == 3


def test_pick_k_prefers_stable_solutions_then_smaller_k():
    assert pick_k(pd.DataFrame({"k": [2, 3, 4], "silhouette": [0.9, 0.5, 0.5], "stability_ari": [0.1, 1, 1]})) == 3
    assert pick_k(pd.DataFrame({"k": [2, 3], "silhouette": [0.4, 0.6], "stability_ari": [0.5, 0.6]})) == 3  # none stable
    assert pick_k(pd.DataFrame({"k": [2, 3, 4], "silhouette": [0.2, 0.7, 0.7], "stability_ari": [1, 1, 1]})) == 3


def test_profile_and_names_by_hand():
    prepared = pd.DataFrame({"time": [10.0, 12, 100, 110], "job": ["Pro", "Pro", "Student", None]})
    prof = profile_segments(
        prepared, [1, 1, 2, 2], [1, 1, 0, 0], score=[90, 80, 10, 20], categorical=["job"], labels={"time": "time on website"}
    )
    assert prof["leads"].tolist() == [2, 2] and prof["conversion_rate"].tolist() == [1.0, 0.0]
    assert prof["mean_score"].tolist() == [85.0, 15.0]
    # time: (11 - 58) / 54.4 = -0.86 standard deviations; job Pro: log(100 % / 50 %) = 0.69
    assert prof.loc[0, "distinguishing"] == "low time on website (11 vs 58); job Pro (100 % vs 50 %)"
    names, advice = name_segments(prof, base_rate=0.5)
    assert names[1] == "High-potential: low time on website" and names[2].startswith("Low-potential: ")
    assert set(advice) == {1, 2}
    # a gap no one would act on is left out: 16 % vs 14 % (ratio 1.14), a mean 0.05 SD off
    n = 100
    near = pd.DataFrame(
        {
            "time": np.r_[np.full(n, 50.0), np.full(n, 48.0)] + np.tile([-20.0, 20.0], n),
            "job": ["Pro"] * 16 + ["Student"] * 84 + ["Pro"] * 12 + ["Student"] * 88,
        }
    )
    prof = profile_segments(near, [1] * n + [2] * n, [1, 0] * n, categorical=["job"], labels={"time": "time on website"})
    assert prof.loc[0, "distinguishing"].count(";") == 0  # only the strongest, weak as it is, to name the segment


def test_a_yes_no_trait_is_told_as_shares_of_yes():
    prepared = pd.DataFrame({"ebook": [1.0, 1, 1, 0, 0, 0, 0, 1], "time": [5.0, 5, 5, 5, 5, 5, 5, 5]})
    prof = profile_segments(prepared, [1, 1, 1, 1, 2, 2, 2, 2], [1, 0] * 4, yes_no=["ebook"], labels={"ebook": "e-book download"})
    assert prof.loc[0, "distinguishing"] == "high share with e-book download (75 % vs 50 %)"
    assert prof.loc[1, "distinguishing"] == "low share with e-book download (25 % vs 50 %)"


def test_channel_advice_only_where_a_segment_s_channels_differ():
    """'Protect the channels that bring these leads' tells a client something only when the
    segment's leads come from other channels than the rest."""
    from leadscoring.training.segmentation import channel_gaps, name_segments

    seg = np.repeat([1, 2, 3], 100)
    same = ["web", "ads", "fair", "web"] * 75  # each segment: the same mix
    assert max(channel_gaps(seg, same).values()) < 0.05
    apart = ["web"] * 100 + ["ads"] * 100 + ["web", "ads"] * 50
    gaps = channel_gaps(seg, apart)
    assert gaps[1] == pytest.approx(0.5) and gaps[3] == pytest.approx(0.0)
    profile = pd.DataFrame({"segment": [1, 2, 3], "conversion_rate": [0.6, 0.1, 0.3], "distinguishing": ["", "", ""]})
    _, advice = name_segments(profile, 0.3, channel_gaps=channel_gaps(seg, same))
    assert advice[1] == "Route to sales fast." and advice[2] == "Automated marketing only."
    _, advice = name_segments(profile, 0.3, channel_gaps=gaps)
    assert "protect the channels" in advice[1] and "review spend on the channels" in advice[2]
