"""The model card (``01_Documentos/model_card.md``), regenerated from the manifest: after a
full run (:func:`model_card`) and after a retraining promoted a model (:func:`retrained_card`)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from leadscoring.config import ProjectConfig
from leadscoring.formats import NumberStyle, fixed, percent
from leadscoring.training.evaluation import calibration_in_the_large
from leadscoring.training.grades import grade_bucket_conflict, grade_definition


def _md_table(df: pd.DataFrame, style: NumberStyle) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        cells = [fixed(v, 4, style=style) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def post_contact_caveats(cfg: ProjectConfig, features: Sequence[str] | None = None) -> str:
    """The model card's caveat about fields known only after the sales contact, from the
    configuration (``data.post_contact``, their labels, ``data.use_post_contact_fields``);
    ``features``, the model's variables when known, says which ones the model actually uses."""
    post = list(cfg.data.post_contact)
    if not post:
        return (
            "- No field is configured as known only after the sales contact (`data.post_contact`); the leakage\n"
            "  audit above keeps out the fields whose data shows it. If an input is filled in or updated by the\n"
            "  sales team after contacting a lead, list it there: a model trained on it ranks leads with\n"
            "  information it will not have when they must be prioritised."
        )
    labels = cfg.model_data.labels
    named = ", ".join(f"`{c}`" + (f" ({labels[c]})" if c in labels else "") for c in post)
    if not cfg.data.use_post_contact_fields:
        return (
            f"- Post-contact fields ({named}) are known only after the sales contact and are **not used**\n"
            "  (`data.use_post_contact_fields: false`): the model is a pre-contact model."
        )
    used = [c for c in post if features is None or c in features]
    status = (
        f"are **used** by the model ({', '.join(f'`{c}`' for c in used)})"
        if used
        else "are allowed but none was selected by the model"
    )
    return (
        f"- Post-contact fields ({named}) are known only after the sales contact and {status}.\n"
        "  A lead scored before any contact has these fields empty or at their initial value, and its\n"
        "  score is less certain. Set `data.use_post_contact_fields: false` to train a pre-contact model."
    )


#: How each shippable family's per-lead contributions are obtained (the reasons' source).
_CONTRIBUTIONS = {
    "xgboost": "XGBoost's SHAP values",
    "logistic": "a logistic regression's coefficient times the value's distance from its training mean",
}


def score_fields_section(manifest: Mapping[str, Any], cfg: ProjectConfig) -> str:
    """The model card's "What a score carries" section: reasons, fit and engagement scores
    (how each is obtained, how well each ranks alone), grades and trend."""
    book = manifest.get("reasons") or {}
    groups, auc = book.get("groups", {}), manifest.get("group_validation_auc", {})
    n = cfg.scoring.reasons
    lines = [
        f"- **Reasons**: up to {n.positive} variables pushing the score up and {n.negative} pulling it down, "
        f"from the model's per-lead contributions ({_CONTRIBUTIONS.get(manifest.get('family', ''), 'per variable')}), "
        "each with its evidence from the "
        f"{manifest.get('training_rows')} training leads (conversion rate of the level, or where a number stands "
        f"among them; levels seen in fewer than {n.min_leads} leads get none)."
    ]
    for g, what in (("fit", "who the lead is"), ("engagement", "what the lead did")):
        members, a = groups.get(g, []), auc.get(f"{g}_score")
        head = f"- **{g.capitalize()} score** ({what}, 0-100): "
        if not members:
            lines.append(head + f"left empty: no variable of `data.{g}_columns` is in the model.")
            continue
        ranks = (
            f"; alone it ranks the validation leads with ROC-AUC **{fixed(a, style=cfg.report.number_style)}**"
            if a is not None
            else ""
        )
        named = ", ".join(f"{cfg.model_data.labels[v]} (`{v}`)" if v in cfg.model_data.labels else f"`{v}`" for v in members)
        lines.append(head + f"the share of training leads whose {named} added less to the odds of converting{ranks}.")
    gr = manifest.get("grades") or {}
    if gr:
        pairs = ", ".join(f"{nm} ≥ {m}" for nm, m in zip(gr["names"], gr["min_scores"], strict=True))
        how = {
            "ranges": "configured score ranges",
            "shares": "shares of leads learned on the training leads' out-of-fold scores",
            "capacity": f"capacity: {gr.get('calls_per_week')} calls per week of {(gr.get('leads_per_week') or 0):.0f} leads",
        }[gr["method"]]
        shares = ", ".join(percent(x, style=cfg.report.number_style) for x in gr.get("training_shares", []))
        lines.append(f"- **Grades** ({how}): {pairs}; training leads per grade (out of fold): {shares}.")
    lines.append(
        f"- **Trend**: against the lead's previous score in the score history; improving or declining "
        f"from {cfg.scoring.trend_points} points, `new` for a first score."
    )
    return "\n".join(lines)


def model_card(
    manifest: dict[str, Any],
    cv_table: pd.DataFrame,
    comparison: pd.DataFrame,
    selection: dict[str, Any],
    cfg: ProjectConfig,
    leakage: str | None = None,
) -> str:
    """Markdown model card: what the model is, data, metrics, the leakage audit (``leakage``:
    :func:`~leadscoring.training.leakage.audit_summary` and
    :func:`~leadscoring.training.stakes.stakes_summary`, in markdown) and caveats."""
    val = manifest.get("validation", {})
    cv = manifest.get("cv", {})
    style = cfg.report.number_style
    buckets = ", ".join(f"{b.name} ≥ {b.min_score} → {b.action}" for b in cfg.scoring.buckets)
    cv_cols = ["model", "family", "imbalance", "roc_auc_mean", "roc_auc_std", "average_precision_mean", "brier_mean"]
    comp = comparison.reset_index().rename(columns={"index": "model"})[
        ["model", "roc_auc", "average_precision", "brier", "gain_at_30pct"]
    ]
    dropped = "\n".join(f"- `{v}`: {why}" for v, why in selection.get("dropped", {}).items()) or "- none"
    return f"""# Model card: lead scoring model

*Generated from `{manifest["file"]}` and its manifest at {manifest["created_at"]}. Do not edit by hand.*

## What it is
- **Model**: {manifest.get("model_name")}; parameters {manifest.get("params") or "default"}.
- **Why this model**: {manifest.get("choice", "not recorded")}.
- **Tuning**: {manifest.get("tuning_reason", "not recorded")}.
- **Calibration**: {manifest.get("calibration_reason", "not recorded")}.
- **Input**: one lead in the raw export layout ({len(manifest.get("input_columns", []))} columns, no target).
- **Output**: probability of `{cfg.data.target_column} = {cfg.data.positive_value}`; score = round(100 × probability);
  buckets: {buckets}.
- **SHA-256** `{manifest["sha256"]}`; versions {manifest.get("versions")}.

## Data
- Training: {manifest.get("training_rows")} leads (working split), fingerprint `{str(manifest.get("data_fingerprint"))[:16]}…`.
- Validation: {manifest.get("validation_rows")} leads held out by notebook 01 and used once.
- Variables used: {", ".join(f"`{f}`" for f in manifest.get("features", []))}.

Dropped variables:
{dropped}

## Performance
Cross-validated ({cv.get("folds")} folds) ROC-AUC {fixed(cv.get("roc_auc"), 4, style=style)}, \
Brier {fixed(cv.get("brier"), 4, style=style)}.
Validation ROC-AUC **{fixed(val.get("roc_auc"), 4, style=style)}**, Brier **{fixed(val.get("brier"), 4, style=style)}**,
conversions captured in the top 30 % of leads **{percent(val.get("gain_at_30pct"), 1, style=style)}**.
{_drift_line(val, cfg)}
Candidates (cross-validation on the working split):

{_md_table(cv_table[[c for c in cv_cols if c in cv_table.columns]], style)}

Validation split:

{_md_table(comp, style)}

## What a score carries
{score_fields_section(manifest, cfg)}

## Leakage audit
{leakage or "Not run for this model."}
## Caveats
{post_contact_caveats(cfg, manifest.get("features"))}
{_conflict_line(manifest, cfg)}- Scores are only as current as the behavioural fields: re-score leads whose activity changed.
- Retrain when conversion patterns move (new channels, campaigns, pricing).
"""


def _drift_line(val: Mapping[str, Any], cfg: ProjectConfig) -> str:
    """:func:`calibration_in_the_large` of the validation figures, as a paragraph ('' when none)."""
    by_date = cfg.data.date_column is not None
    text = calibration_in_the_large(
        val.get("base_rate"), val.get("mean_probability"), val.get("n"), by_date=by_date, style=cfg.report.number_style
    )
    title = "The conversion rate has moved." if by_date else "Probabilities are off on new leads."
    return f"\n**{title}** {text}\n" if text else ""


def _conflict_line(manifest: Mapping[str, Any], cfg: ProjectConfig) -> str:
    """:func:`grade_bucket_conflict` of the model's grades, as a caveat line ('' when they agree)."""
    text = grade_bucket_conflict(grade_definition(cfg.scoring.grades, manifest), cfg.scoring.buckets)
    return f"- **Grades and buckets disagree**: {text}.\n" if text else ""


def _fmt(v: Any, style: NumberStyle) -> str:
    return fixed(v, 4, style=style) if isinstance(v, float) else str(v)


def _caveats(card: str | None) -> str:
    """The previous card's "Caveats" section (configuration-driven text), if it has one."""
    if not card:
        return ""
    m = re.search(r"^## Caveats\n.*?(?=^## |\Z)", card, flags=re.S | re.M)
    return m.group(0).rstrip() + "\n" if m else ""


def retrained_card(manifest: Mapping[str, Any], cfg: ProjectConfig, previous_card: str | None = None) -> str:
    """Markdown model card of a retrained model: says it was retrained, from which model, and
    shows its own figures (measured on the held-out new leads), next to the replaced model's
    on the same leads. The full run's cross-validation and validation figures belonged to the
    replaced model and are not repeated."""
    r = manifest["retrain"]
    own, champ = manifest["metrics"], r["champion_on_holdout"]
    cols = ["roc_auc", "average_precision", "brier", "log_loss", "gain_at_30pct"]
    table = "\n".join(
        [
            "| model | " + " | ".join(cols) + " |",
            "|" + "---|" * (len(cols) + 1),
            "| this model (challenger) | " + " | ".join(_fmt(own.get(c), cfg.report.number_style) for c in cols) + " |",
            f"| replaced model `{manifest['retrained_from'][:12]}` | "
            + " | ".join(_fmt(champ.get(c), cfg.report.number_style) for c in cols)
            + " |",
        ]
    )
    buckets = ", ".join(f"{b.name} ≥ {b.min_score} → {b.action}" for b in cfg.scoring.buckets)
    refreshed = "\n".join(f"- {name}: {what}" for name, what in r.get("refreshed", {}).items()) or "- none"
    features = ", ".join(f"`{f}`" for f in manifest.get("features", []))
    return f"""# Model card: lead scoring model (retrained)

*Generated from `{manifest["file"]}` and its manifest at {manifest["created_at"]} by `leadscoring retrain`. Do not edit by hand.*

## Retrained
This model was **retrained** on {manifest["retrained_at"]}: the recipe of model `{manifest["retrained_from"][:12]}`
refit on {manifest.get("training_rows")} leads (the outcome history plus half of {r["new_outcomes"]} newly known
outcomes), fingerprint `{str(manifest.get("data_fingerprint"))[:16]}…`. It replaced that model because it was not
worse (tolerance {r["tolerance"]}) on the other half: {own["rows"]} new leads that neither model had seen.

Its own figures, {own["measured_on"]}:

{table}

These are not comparable one to one with the validation figures of a full run (notebook 07 measures on
the validation split of notebook 01); run `leadscoring run` for a complete evaluation. The replaced model set
and its card are archived in `{r.get("archived") or "the versions folder"}`; `leadscoring rollback` restores them.

Other models of the set:
{refreshed}

## What it is
- **Model**: {manifest.get("model_name")}; parameters {manifest.get("params") or "default"}.
- **Why this model**: {manifest.get("choice", "not recorded")}.
- **Tuning**: {manifest.get("tuning_reason", "not recorded")}.
- **Calibration**: {manifest.get("calibration_reason", "not recorded")}.
- **Output**: probability of `{cfg.data.target_column} = {cfg.data.positive_value}`; score = round(100 × probability);
  buckets: {buckets}.
- **Variables used**: {features or "see the manifest"}.
- **SHA-256** `{manifest["sha256"]}`; versions {manifest.get("versions")}.

{_caveats(previous_card)}"""
