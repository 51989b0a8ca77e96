"""The small models the tests and benchmarks score with: a calibrated XGBoost scoring model
and a 3-segment model, trained in seconds, saved with manifests as a production run saves them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from leadscoring.config import ProjectConfig


def save_scoring_model(
    cfg: ProjectConfig,
    X: pd.DataFrame,
    y: pd.Series,
    folder: Path,
    *,
    n_estimators: int = 60,
    name: str = "test",
    features: list[str] | None = None,
) -> object:
    """Fit a sigmoid-calibrated XGBoost pipeline (``n_estimators`` trees, 3 folds, seed 0;
    ``features``: the selected variables, default all) on ``X``/``y`` and save it in
    ``folder`` with its reasons and grades; returns the model."""
    from sklearn.model_selection import StratifiedKFold

    from leadscoring.artifacts import SCORE_MODEL, save_model
    from leadscoring.ingest.split import training_ids
    from leadscoring.serving.scorer import to_score
    from leadscoring.training.compare import calibrated
    from leadscoring.training.explanations import reason_book_for
    from leadscoring.training.grades import grades_for
    from leadscoring.training.pipeline import build_pipeline, input_missing_shares, xgb_classifier

    base = build_pipeline(cfg, xgb_classifier(0, n_estimators=n_estimators), features=features, scale=False)
    model = calibrated(base, "sigmoid", StratifiedKFold(3, shuffle=True, random_state=0)).fit(X, y)
    save_model(
        model,
        folder / SCORE_MODEL,
        kind="lead_scoring_model",
        model_name=name,
        features=features or list(X.columns),
        input_missing=input_missing_shares(model, X),
        reasons=reason_book_for(cfg, model, X, y).to_dict(),
        grades=grades_for(cfg, to_score(model.predict_proba(X)[:, 1]), X),
        training_ids=training_ids(cfg, X),
    )
    return model


def save_small_models(cfg: ProjectConfig, sample: pd.DataFrame, folder: Path, *, name: str = "test") -> None:
    """The scoring model (:func:`save_scoring_model`) and a 3-segment model (segments named
    A, B, C) trained on ``sample`` (raw leads with their outcome), saved in ``folder``."""
    from leadscoring.artifacts import SEGMENT_MODEL, save_model
    from leadscoring.training.segmentation import LeadSegmenter, segment_features

    target = cfg.data.target_column
    X, y = sample.drop(columns=target), sample[target]
    save_scoring_model(cfg, X, y, folder, name=name)
    seg = LeadSegmenter(segment_features(cfg), k=3, seed=0).fit(X, y).set_names({1: "A", 2: "B", 3: "C"})
    save_model(seg, folder / SEGMENT_MODEL, kind="segment_model")
