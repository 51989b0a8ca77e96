"""The dask engine (local cluster, 2 workers, one task per file) gives the local engine's results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscoring.serving.batch import score_file
from leadscoring.serving.distributed import score_dask
from leadscoring.serving.history import read_history

pytestmark = pytest.mark.slow


def test_dask_engine_matches_local(cfg, sample, small_models, tmp_path):
    # this test's own score history: other tests expect the session's to hold no previous scores
    cfg = cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"score_history": str(tmp_path / "h.parquet")})})
    leads = sample.drop(columns="compra")
    leads.iloc[:500].to_csv(tmp_path / "leads_a.csv", sep=";", index=False)
    leads.iloc[500:].to_csv(tmp_path / "leads_b.csv", sep=";", index=False)
    leads.to_csv(tmp_path / "all.csv", sep=";", index=False)
    score_file(cfg, tmp_path / "all.csv", tmp_path / "local.csv", models_dir=small_models)
    res = score_dask(cfg, str(tmp_path / "leads_*.csv"), tmp_path / "dask_out", models_dir=small_models, workers=2)
    assert res["partitions"] == 2 and res["leads"] == len(sample)
    assert (tmp_path / "dask_out" / "_SUCCESS").is_file()
    parts = sorted((tmp_path / "dask_out").glob("part-*.csv"))
    dask = pd.concat([pd.read_csv(p, dtype={"id": str}) for p in parts]).sort_values("id").reset_index(drop=True)
    local = pd.read_csv(tmp_path / "local.csv", dtype={"id": str}).sort_values("id").reset_index(drop=True)
    assert dask["id"].tolist() == local["id"].tolist()
    np.testing.assert_allclose(dask["probability"], local["probability"], atol=1e-9)
    assert dask["scored_at"].nunique() == 1  # one job, one scoring time across files and workers
    history = read_history(cfg.path("score_history")).to_pandas()
    appended = history[history["scored_at"] == pd.Timestamp(dask["scored_at"].iloc[0])]
    assert sorted(appended["lead_id"]) == sorted(dask["id"]) and (appended["score"].to_numpy() >= 0).all()
    assert list(dask.columns) == list(local.columns) and "reasons" in dask and "trend" in dask
    pd.testing.assert_frame_equal(dask.drop(columns=["probability", "scored_at"]), local.drop(columns=["probability", "scored_at"]))
