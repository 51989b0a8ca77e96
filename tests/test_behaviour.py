"""Behavioural tests of a trained scoring model (directions and invariances a sales team
would take for granted), on the small calibrated XGBoost model of conftest.

Directions are those the shipped data shows without a model: conversion rises with time on
the website (see notebook 03's conversion-by-bins table, re-checked here), and leads who
ask not to be emailed convert less.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscoring.ingest.quality import conversion_by_bins, conversion_by_level
from leadscoring.serving.scorer import Scorer

TIME, OPT_OUT = "tiempo_en_site_total", "no_enviar_email"


AT = "2026-01-01T00:00:00Z"  # one scoring time, so two calls compare field for field


@pytest.fixture(scope="module")
def scorer(cfg, small_models):
    return Scorer.load(cfg, small_models)


@pytest.fixture(scope="module")
def others(leads, sample):
    """200 leads the model was not trained on."""
    rest = leads[~leads["id"].isin(sample["id"])]
    return rest.drop(columns="compra").sample(200, random_state=0).reset_index(drop=True)


def _p(scorer, X):
    return scorer.score_frame(X, reasons=False)["probability"].to_numpy()


def test_the_data_shows_the_directions_tested_below(leads):
    by_time = conversion_by_bins(leads, TIME, "compra", bins=5)
    rates = by_time["conversion_rate"].to_numpy()
    assert rates[-1] > rates[0] + 0.3  # top fifth of time on site converts far more than the bottom fifth
    by_opt_out = conversion_by_level(leads, OPT_OUT, "compra").set_index(OPT_OUT)["conversion_rate"]
    assert by_opt_out["Yes"] < by_opt_out["No"]


def test_more_time_on_the_website_does_not_lower_the_score(scorer, others, leads):
    lo, hi = leads[TIME].quantile([0.1, 0.9])
    p_lo, p_hi = _p(scorer, others.assign(**{TIME: lo})), _p(scorer, others.assign(**{TIME: hi}))
    assert np.mean(p_hi >= p_lo) >= 0.95  # all else equal, for (nearly) every lead
    assert np.mean(p_hi - p_lo) > 0.15  # and by a margin a sales person would notice


def test_opting_out_of_email_does_not_raise_the_score(scorer, others):
    p_no, p_yes = _p(scorer, others.assign(**{OPT_OUT: "No"})), _p(scorer, others.assign(**{OPT_OUT: "Yes"}))
    assert np.mean(p_yes <= p_no + 1e-9) >= 0.95


def test_scores_do_not_depend_on_row_order_ids_or_extra_columns(cfg, scorer, others):
    base = scorer.score_frame(others, scored_at=AT)
    shuffled = scorer.score_frame(others.sample(frac=1.0, random_state=3), scored_at=AT)
    pd.testing.assert_frame_equal(shuffled.set_index("id").loc[base["id"]].reset_index(), base)
    renamed = scorer.score_frame(others.assign(id=[f"other-{i}" for i in range(len(others))]), scored_at=AT)
    pd.testing.assert_frame_equal(renamed.drop(columns="id"), base.drop(columns="id"))
    extra = others.assign(crm_owner="Ana", campaign_code=np.arange(len(others)))
    pd.testing.assert_frame_equal(scorer.score_frame(extra, scored_at=AT), base)


def test_a_lead_alone_scores_as_in_a_batch(scorer, others):
    batch = scorer.score_frame(others, scored_at=AT)
    for i in (0, 57, 199):
        alone = scorer.score_frame(others.iloc[[i]], scored_at=AT)
        pd.testing.assert_frame_equal(alone.reset_index(drop=True), batch.iloc[[i]].reset_index(drop=True))
