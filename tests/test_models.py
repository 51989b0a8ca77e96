"""Model pipelines, calibration, persistence and scoring on a small trained model."""

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from imblearn import FunctionSampler
from sklearn.model_selection import StratifiedKFold, cross_validate

from leadscoring.artifacts import SCORE_MODEL, ModelIntegrityError, load_model, manifest_path
from leadscoring.errors import LeadDataError
from leadscoring.ingest.split import split_xy
from leadscoring.serving.batch import score_file
from leadscoring.serving.outputs import reasons_as_text
from leadscoring.training.explanations import contributions, prepare
from leadscoring.training.pipeline import build_pipeline, final_estimator, xgb_classifier

AT = "2026-01-01T00:00:00Z"  # one scoring time: outputs of two runs compare byte for byte


class _Recorder:
    """Picklable sampler function that records how many rows it was asked to resample."""

    def __init__(self):
        self.sizes = []

    def __call__(self, X, y):
        self.sizes.append(len(X))
        return X, y


def test_resampler_runs_only_inside_training_folds(cfg, sample):
    X, y = split_xy(sample, cfg)
    rec = _Recorder()
    pipe = build_pipeline(cfg, xgb_classifier(0, n_estimators=20), scale=False, sampler=FunctionSampler(func=rec, validate=False))
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    res = cross_validate(pipe, X, y, cv=cv, scoring="roc_auc", n_jobs=1)
    assert len(res["test_score"]) == 4 and (res["test_score"] > 0.75).all()  # the resampled model still ranks
    # cross_validate clones the pipeline, so the recorder is copied: read the sizes through a fit
    pipe.fit(X.iloc[:600], y.iloc[:600])
    sampler = pipe.named_steps["sample"]
    assert sampler.func.sizes == [600]
    assert pipe.predict_proba(X).shape == (len(X), 2)  # scoring does not resample
    assert sampler.func.sizes == [600]


def test_resampler_sees_training_fold_sizes_in_cv(cfg, sample):
    X, y = split_xy(sample, cfg)
    sizes = []

    def record(Xs, ys):
        sizes.append(len(Xs))
        return Xs, ys

    pipe = build_pipeline(
        cfg, xgb_classifier(0, n_estimators=20), scale=False, sampler=FunctionSampler(func=record, validate=False)
    )
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    cross_validate(pipe, X, y, cv=cv, scoring="roc_auc", n_jobs=1)
    assert sizes == [len(tr) for tr, _ in cv.split(X, y)]
    assert max(sizes) < len(X)


@pytest.fixture(scope="module")
def trained(small_models):
    model, _ = load_model(small_models / SCORE_MODEL)
    return model, small_models


def test_calibrated_probabilities_and_contributions(cfg, sample, trained):
    model, _ = trained
    X, _ = split_xy(sample, cfg)
    p = model.predict_proba(X)[:, 1]
    assert ((p > 0) & (p < 1)).all()
    contrib, _ = contributions(model, X.head(30))
    assert len(contrib) == 30
    booster = final_estimator(model).get_booster()
    import xgboost as xgb

    encoded = prepare(model, X.head(30))[1]
    margin = booster.predict(xgb.DMatrix(encoded), output_margin=True)
    bias = booster.predict(xgb.DMatrix(encoded), pred_contribs=True)[:, -1]
    np.testing.assert_allclose(contrib.sum(axis=1) + bias, margin, rtol=1e-4, atol=1e-4)


def test_manifest_tampering_is_detected(trained, tmp_path):
    _, folder = trained
    copy = tmp_path / SCORE_MODEL
    shutil.copy(folder / SCORE_MODEL, copy)
    shutil.copy(manifest_path(folder / SCORE_MODEL), manifest_path(copy))
    loaded, info = load_model(copy)
    assert info["kind"] == "lead_scoring_model" and len(info["sha256"]) == 64
    with open(copy, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelIntegrityError, match="does not match the manifest"):
        load_model(copy)


def test_version_mismatch_and_missing_manifest_refused(trained, tmp_path):
    _, folder = trained
    copy = tmp_path / SCORE_MODEL
    shutil.copy(folder / SCORE_MODEL, copy)
    with pytest.raises(ModelIntegrityError, match="manifest"):
        load_model(copy)
    info = json.loads(manifest_path(folder / SCORE_MODEL).read_text())
    info["versions"]["scikit-learn"] = "0.24.2"
    manifest_path(copy).write_text(json.dumps(info))
    with pytest.raises(ModelIntegrityError, match=r"scikit-learn 0\.24\.2"):
        load_model(copy)


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"[]", "manifest is not a JSON object"), (b'{"kind": "caf\xe9"}', "manifest is not valid JSON"), (b"{", "not valid JSON")],
)
def test_a_damaged_manifest_is_one_line_naming_its_folder(trained, tmp_path, content, expected):
    """An archived model set's manifest (``04_Modelos/versions/<version>/``): the message says which."""
    _, folder = trained
    copy = tmp_path / "versions" / "2026-12-01_0123456789ab" / SCORE_MODEL
    copy.parent.mkdir(parents=True)
    shutil.copy(folder / SCORE_MODEL, copy)
    manifest_path(copy).write_bytes(content)
    with pytest.raises(ModelIntegrityError) as err:
        load_model(copy)
    message = str(err.value)
    assert "\n" not in message and str(manifest_path(copy)) in message and expected in message


def test_score_file_is_complete_deterministic_and_validated(cfg, sample, trained, tmp_path):
    _, folder = trained
    src = tmp_path / "leads.csv"
    sample.drop(columns="compra").to_csv(src, sep=";", index=False)
    out1, out2 = tmp_path / "s1.csv", tmp_path / "s2.csv"
    res = score_file(cfg, src, out1, models_dir=folder, scored_at=AT)
    score_file(cfg, src, out2, models_dir=folder, scored_at=AT)
    assert out1.read_bytes() == out2.read_bytes()
    s1 = pd.read_csv(out1, dtype={"id": str})
    assert res["leads"] == len(sample) and sum(res["buckets"].values()) == len(sample)
    assert list(s1.columns) == [
        "id",
        "probability",
        "score",
        "bucket",
        "recommended_action",
        "grade",
        "fit_score",
        "engagement_score",
        "segment",
        "reasons",
        "previous_score",
        "trend",
        "model_version",
        "scored_at",
    ]
    assert (s1["scored_at"] == AT).all() and (s1["trend"] == "new").all() and s1["previous_score"].isna().all()
    assert set(s1["segment"]) <= {"A", "B", "C"}
    assert len(s1) == len(sample) and s1["id"].tolist() == sample["id"].tolist()
    assert (s1["score"] == np.floor(s1["probability"] * 100 + 0.5)).all()

    bad = sample.drop(columns=["compra", "ocupacion"])
    bad.to_csv(src, sep=";", index=False)
    before = out1.read_bytes()
    with pytest.raises(LeadDataError, match="ocupacion"):
        score_file(cfg, src, out1, models_dir=folder)
    assert out1.read_bytes() == before  # nothing half-written
    txt = sample.drop(columns="compra").astype(str)
    txt.loc[txt.index[3], "tiempo_en_site_total"] = "n/a"
    txt.to_csv(src, sep=";", index=False)
    with pytest.raises(LeadDataError, match=r"tiempo_en_site_total.*'n/a' \(line 5\)"):
        score_file(cfg, src, out1, models_dir=folder, bad_rows="stop")


def test_unseen_category_is_scored(cfg, sample, trained):
    from leadscoring.serving.scorer import Scorer

    model, folder = trained
    scorer = Scorer.load(cfg, folder)
    leads = sample.drop(columns="compra").head(3).copy()
    leads["fuente"] = "TikTok"
    out = scorer.score_frame(leads)
    assert out["probability"].between(0, 1).all() and len(out) == 3


def test_chunked_equals_whole_file_and_duplicates_across_chunks(cfg, sample, trained, tmp_path):
    _, folder = trained
    src = tmp_path / "leads.csv"
    sample.drop(columns="compra").to_csv(src, sep=";", index=False)
    whole, chunked, pq_out = tmp_path / "whole.csv", tmp_path / "chunked.csv", tmp_path / "chunked.parquet"
    score_file(cfg, src, whole, models_dir=folder, chunk_rows=10_000, scored_at=AT)
    score_file(cfg, src, chunked, models_dir=folder, chunk_rows=97, scored_at=AT)  # 800 leads -> 9 chunks
    assert whole.read_bytes() == chunked.read_bytes()
    score_file(cfg, src, pq_out, models_dir=folder, chunk_rows=97, scored_at=AT)
    as_text = reasons_as_text(pq.read_table(pq_out)).to_pandas()
    pd.testing.assert_frame_equal(
        as_text,
        pd.read_csv(
            whole,
            dtype={"id": object},
            keep_default_na=False,
            na_values={"fit_score": [""], "engagement_score": [""], "previous_score": [""]},
        ),
        check_dtype=False,
    )
    dup = sample.drop(columns="compra").copy()
    dup.loc[dup.index[500], "id"] = dup["id"].iloc[3]
    dup.to_csv(src, sep=";", index=False)
    with pytest.raises(LeadDataError, match=r"duplicate id .* \(line 502\) already seen"):
        score_file(cfg, src, chunked, models_dir=folder, chunk_rows=97, scored_at=AT, bad_rows="stop")
    assert whole.read_bytes() == chunked.read_bytes()  # the failed run left the old output intact


def test_parallel_workers_give_identical_output(cfg, sample, trained, tmp_path):
    _, folder = trained
    src = tmp_path / "leads.csv"
    sample.drop(columns="compra").to_csv(src, sep=";", index=False)
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    score_file(cfg, src, one, models_dir=folder, chunk_rows=150, scored_at=AT)
    res = score_file(cfg, src, two, models_dir=folder, chunk_rows=150, jobs=2, scored_at=AT)
    assert res["leads"] == len(sample)
    assert one.read_bytes() == two.read_bytes()


def test_a_model_fitted_twice_pickles_to_the_same_bytes(cfg, sample, tmp_path):
    """A manifest's SHA-256 names a model: the same data and seed give the same bytes in any
    process. A set among the fitted attributes pickled in the order of its process's string
    hashing, so every run gave a new SHA-256 for the same model."""
    import os
    import subprocess
    import sys

    from .conftest import CONFIG

    sample.to_pickle(tmp_path / "sample.pkl")
    script = (
        "import hashlib, pickle, pandas as pd\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from leadscoring.config import load_config\n"
        "from leadscoring.training.pipeline import build_pipeline\n"
        f"cfg = load_config({str(CONFIG)!r})\n"
        f"df = pd.read_pickle({str(tmp_path / 'sample.pkl')!r})\n"
        "X, y = df.drop(columns=cfg.data.target_column), df[cfg.data.target_column]\n"
        "print(hashlib.sha256(pickle.dumps(build_pipeline(cfg, LogisticRegression(max_iter=500)).fit(X, y))).hexdigest())\n"
    )
    shas = {
        subprocess.run(
            [sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True, check=True
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(shas) == 1, shas
