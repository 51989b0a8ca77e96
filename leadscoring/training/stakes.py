"""What the leakage audit's exclusions were worth: the validation figures of the chosen model
next to the same recipe trained with the variables the audit kept out put back, and, when the model
reads fields known only after the sales contact that the configuration lets in, the same
recipe without them (notebook 07); in plain words for the model card and the evaluation
report (notebook 09).

The other models are diagnostics, never candidates: they are not saved, not compared in
cross-validation and never chosen. They show the user how much better a model *looks* when
it may read fields filled in after the sales contact, which is exactly what it could not know
when a new lead must be prioritised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from leadscoring.config import ProjectConfig
from leadscoring.formats import fixed, percent
from leadscoring.training.evaluation import classification_metrics
from leadscoring.training.leakage import blocked_variables

WITHOUT = "this model (without the variables the audit kept out)"
WITH = "same recipe with the variables the audit kept out"
WITHOUT_ALLOWED = "same recipe without the post-contact fields it reads"
COLUMNS = ["model", "variables", "roc_auc", "average_precision", "gain_at_30pct", "brier"]


def config_allowing(cfg: ProjectConfig, columns: Sequence[str]) -> ProjectConfig:
    """``cfg``, or a copy whose model columns let in the post-contact fields among ``columns``
    that the configuration keeps out of models (``data.use_post_contact_fields: false``), for
    the diagnostic model only."""
    if not cfg.data.post_contact or cfg.data.use_post_contact_fields or not set(columns) & set(cfg.data.post_contact):
        return cfg
    data = cfg.data.model_copy(update={"use_post_contact_fields": True})
    return cfg.model_copy(update={"data": data})


def leakage_stakes(
    cfg: ProjectConfig,
    audit: pd.DataFrame,
    features: Sequence[str],
    recipe: Callable[[ProjectConfig, list[str]], BaseEstimator],
    X: pd.DataFrame,
    y: pd.Series,
    X_valid: pd.DataFrame,
    y_valid: pd.Series,
    p_valid: np.ndarray,
) -> pd.DataFrame:
    """Validation figures of the chosen model (its probabilities ``p_valid``); of
    ``recipe(cfg, features + excluded)`` fitted on ``X, y`` when the audit kept variables out
    (:data:`WITH`); and of ``recipe(cfg, features - post-contact)`` when the model reads fields
    the configuration lists as known only after the sales contact and lets in
    (``data.post_contact`` with ``use_post_contact_fields``), with the derived features built
    from them (:data:`WITHOUT_ALLOWED`). Fields in ``data.allow_leaky`` are not among them: the
    client confirmed them as known before the contact. ``recipe`` builds an unfitted estimator
    from a configuration and a variable list."""
    blocked = [v for v in blocked_variables(cfg, audit) if v not in features]
    rows = [_row(WITHOUT, features, y_valid, p_valid)]
    if blocked:
        with_all = [*features, *blocked]
        model = recipe(config_allowing(cfg, blocked), with_all).fit(X, y)
        rows.append(_row(WITH, with_all, y_valid, model.predict_proba(X_valid)[:, 1]))
    post = [v for v in cfg.data.post_contact if cfg.data.use_post_contact_fields]
    allowed = [v for v in features if v in {*post, *cfg.features.built_from(post)}]
    if allowed and len(allowed) < len(features):
        rest = [v for v in features if v not in allowed]
        model = recipe(cfg, rest).fit(X, y)
        rows.append(_row(WITHOUT_ALLOWED, rest, y_valid, model.predict_proba(X_valid)[:, 1]))
    return pd.DataFrame(rows, columns=COLUMNS)


def stakes_auc(stakes: pd.DataFrame, model: str) -> float | None:
    """The validation ROC-AUC of row ``model`` of :func:`leakage_stakes`' table, None without it."""
    row = stakes.loc[stakes["model"] == model, "roc_auc"]
    return float(row.iloc[0]) if len(row) else None


def _row(name: str, variables: Sequence[str], y: pd.Series, p: np.ndarray) -> dict[str, object]:
    m = classification_metrics(y, p)
    return {"model": name, "variables": ", ".join(variables), **{k: m[k] for k in COLUMNS[2:]}}


def stakes_summary(stakes: pd.DataFrame) -> str:
    """Plain words on :func:`leakage_stakes`' table (markdown, for the card and the report)."""
    ours = stakes.iloc[0]
    by_name = stakes.set_index("model")
    lines: list[str] = []
    if WITHOUT_ALLOWED in by_name.index:
        honest = by_name.loc[WITHOUT_ALLOWED]
        read = [v for v in ours["variables"].split(", ") if v not in honest["variables"].split(", ")]
        gap = ours["roc_auc"] - honest["roc_auc"]
        lines.append(
            f"The model reads fields the configuration lists as known only after the sales contact and lets in "
            f"(`data.use_post_contact_fields`): {', '.join(read)}. Without them the same recipe reads a validation "
            f"ROC-AUC of **{fixed(honest['roc_auc'])}** instead of **{fixed(ours['roc_auc'])}**"
            + (
                ": the higher figure holds only where those fields are filled in before a lead is prioritised."
                if gap > 0.005
                else ", so they add little, and a model without them would rank leads as well."
            )
        )
    if WITH not in by_name.index:
        if not lines:
            return (
                f"No variable was excluded by the leakage audit; the validation ROC-AUC {fixed(ours['roc_auc'])} "
                "is the model's own.\n"
            )
        return " ".join(lines) + "\n\n" + _table(stakes)
    leaky = by_name.loc[WITH]
    added = [v for v in leaky["variables"].split(", ") if v not in ours["variables"].split(", ")]
    gap = leaky["roc_auc"] - ours["roc_auc"]
    lines += [
        f"With the variables the audit kept out ({', '.join(added)}) the same recipe would read a validation ROC-AUC of "
        f"**{fixed(leaky['roc_auc'])}** instead of **{fixed(ours['roc_auc'])}** "
        f"({fixed(gap, signed=True)}), and would put {percent(leaky['gain_at_30pct'])} "
        f"instead of {percent(ours['gain_at_30pct'])} of "
        "the conversions in its top 30 % of leads.",
        (
            "If those fields are filled in once the sales team has acted on a lead, that difference is what they know "
            "about the outcome, which a new lead does not have yet, and the lower figure is the honest one. If the client "
            "confirms they are known before the sales contact, name them in `data.allow_leaky`."
            if gap > 0.005
            else "The variables the audit kept out add little here, so the exclusion costs nothing; keep them out unless the "
            "client confirms they are known before the sales contact (then name them in `data.allow_leaky`)."
        ),
    ]
    return " ".join(lines) + "\n\n" + _table(stakes)


def _table(stakes: pd.DataFrame) -> str:
    table = ["| model | ROC-AUC | average precision | gain at 30 % |", "|---|---|---|---|"]
    table += [
        f"| {r.model} | {fixed(r.roc_auc)} | {fixed(r.average_precision)} | {percent(r.gain_at_30pct, 1)} |"
        for r in stakes.itertuples()
    ]
    return "\n".join(table) + "\n"
