"""Variable selection evidence (notebook 06): information value, mutual information,
redundancy, model-based and out-of-fold permutation importance, and the final list.

Weak or redundant variables are only *candidates* for dropping: :func:`confirm_drops`
drops them only when cross-validation says the model does at least as well without them (a
tree ensemble does not suffer from correlated inputs, and a weak variable can still help).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.feature_selection import mutual_info_classif
from sklearn.inspection import permutation_importance
from sklearn.model_selection import BaseCrossValidator, StratifiedKFold, cross_val_score

from leadscoring.features.encoding import OTHER_LEVEL, frequent_levels
from leadscoring.formats import fixed
from leadscoring.training.pipeline import FIT_PROCESSES
from leadscoring.training.woe import information_value, woe_table


def mutual_information(prepared: pd.DataFrame, y: pd.Series, seed: int) -> pd.Series:
    """Mutual information of each prepared variable with the target (categoricals as codes)."""
    X = pd.DataFrame(index=prepared.index)
    discrete = []
    for col in prepared.columns:
        s = prepared[col]
        if pd.api.types.is_numeric_dtype(s):
            X[col] = s.fillna(s.median() if s.notna().any() else 0.0)
            discrete.append(bool(s.dropna().nunique() <= 2))
        else:
            X[col] = pd.factorize(s.fillna("Missing"))[0]
            discrete.append(True)
    mi = mutual_info_classif(X, np.asarray(y), discrete_features=np.array(discrete), random_state=seed)
    return pd.Series(mi, index=prepared.columns, name="mutual_information")


def redundant_pairs(prepared: pd.DataFrame, threshold: float = 0.85) -> pd.DataFrame:
    """Numeric pairs with |Spearman rho| ≥ threshold."""
    num = prepared.select_dtypes("number")
    corr = num.corr(method="spearman")
    rows = [
        {"a": a, "b": b, "rho": float(corr.loc[a, b])}
        for i, a in enumerate(corr.columns)
        for b in corr.columns[i + 1 :]
        if abs(corr.loc[a, b]) >= threshold
    ]
    return pd.DataFrame(rows, columns=["a", "b", "rho"])


def oof_permutation_importance(
    pipeline: object, X: pd.DataFrame, y: pd.Series, cv: StratifiedKFold, seed: int, repeats: int = 3
) -> pd.Series:
    """Permutation importance (drop in ROC-AUC) of each raw column, measured on the
    held-out fold of each CV split after fitting on the rest: never in-sample."""

    def one_fold(train: np.ndarray, test: np.ndarray) -> pd.Series:
        est = clone(pipeline).fit(X.iloc[train], y.iloc[train])
        res = permutation_importance(
            est, X.iloc[test], y.iloc[test], scoring="roc_auc", n_repeats=repeats, random_state=seed, n_jobs=1
        )
        return pd.Series(res.importances_mean, index=X.columns)

    parts = Parallel(n_jobs=FIT_PROCESSES)(delayed(one_fold)(train, test) for train, test in cv.split(X, y))
    return pd.concat(parts, axis=1).mean(axis=1).rename("permutation_importance")


def grouped_levels(prepared: pd.DataFrame, yes_no: Sequence[str], rare_min_share: float) -> pd.DataFrame:
    """``prepared`` with the levels of each categorical column rarer than ``rare_min_share``
    grouped as ``Other``, as the model's encoder groups them: information value and mutual
    information over hundreds of rare levels (company names, notes) measure noise."""
    out = prepared.copy()
    for col in prepared.columns:
        s = prepared[col]
        if col in yes_no or pd.api.types.is_numeric_dtype(s) or rare_min_share <= 0:
            continue
        kept = frequent_levels(s.value_counts(), len(s), rare_min_share)
        out[col] = s.where(s.isin(kept) | s.isna(), OTHER_LEVEL)
    return out


def selection_table(
    prepared: pd.DataFrame,
    y: pd.Series,
    yes_no: Sequence[str],
    seed: int,
    permutation: pd.Series | None = None,
    model_importance: pd.Series | None = None,
    rare_min_share: float = 0.0,
) -> pd.DataFrame:
    """Information value, mutual information and (when given) out-of-fold permutation and
    model importance per variable; categorical levels rarer than ``rare_min_share`` count as
    one level (:func:`grouped_levels`)."""
    prepared = grouped_levels(prepared, yes_no, rare_min_share)
    woe = woe_table(prepared, y, yes_no=yes_no)
    table = pd.concat([information_value(woe), mutual_information(prepared, y, seed)], axis=1)
    if permutation is not None:
        table = table.join(permutation, how="left")
    if model_importance is not None:
        table = table.join(model_importance.rename("model_importance"), how="left")
    return table.rename_axis("variable").reset_index().sort_values("information_value", ascending=False)


def decide(
    table: pd.DataFrame,
    redundant: pd.DataFrame,
    constant: Sequence[str],
    post_contact: Sequence[str],
    use_post_contact: bool,
    min_iv: float = 0.02,
    suspicious_iv: float = 0.5,
) -> pd.DataFrame:
    """Keep/drop per variable with the reason (constant, leaky, redundant, useless).

    A variable is *useless* when its out-of-fold permutation importance is ≤ 0 (its
    information value is measured in-sample: many levels inflate it), or, without one (a
    derived feature), when its IV < ``min_iv``; of a redundant pair the one with the lower IV
    is dropped; post-contact fields are dropped unless the configuration allows them. Useless
    and redundant variables are only candidates (:func:`confirm_drops`).
    """
    t = table.set_index("variable").copy()
    t["keep"], t["reason"] = True, "informative"
    for v in constant:
        t.loc[v, ["keep", "reason"]] = [False, "constant"]
    for v in t.index:
        if v in post_contact:
            if not use_post_contact:
                t.loc[v, ["keep", "reason"]] = [False, "leaky: known only after the sales contact"]
            else:
                t.loc[v, "reason"] = "kept: post-contact field, allowed by configuration (see model card)"
        elif t.loc[v, "keep"] and t.loc[v].get("information_value", 0) >= suspicious_iv:
            t.loc[v, "reason"] = "kept; very strong (IV > 0.5): confirm it is known before the sales contact"
    perm = t["permutation_importance"] if "permutation_importance" in t else pd.Series(np.nan, index=t.index)
    weak_iv = t["information_value"].fillna(0) < min_iv
    no_importance = perm.notna() & (perm <= 0)
    for v in t.index[(no_importance | (perm.isna() & weak_iv)) & t["keep"]]:
        why = "no information and no out-of-fold importance" if weak_iv[v] else "no out-of-fold importance"
        t.loc[v, ["keep", "reason"]] = [False, f"useless: {why}"]
    for r in redundant.itertuples():
        if r.a in t.index and r.b in t.index and t.loc[r.a, "keep"] and t.loc[r.b, "keep"]:
            weaker = r.a if t.loc[r.a, "information_value"] < t.loc[r.b, "information_value"] else r.b
            other = r.b if weaker == r.a else r.a
            t.loc[weaker, ["keep", "reason"]] = [False, f"redundant with {other} (rho {fixed(r.rho, 2)})"]
    return t.reset_index()


#: Reasons :func:`decide` gives to variables that are only candidates for dropping.
CANDIDATE_REASONS = ("useless", "redundant")


def confirm_drops(
    decision: pd.DataFrame,
    recipe: Callable[[list[str]], object],
    X: pd.DataFrame,
    y: pd.Series,
    cv: BaseCrossValidator,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Drop :func:`decide`'s weak and redundant variables only if cross-validation says the
    model does at least as well without them: ``recipe(variables)`` (an unfitted pipeline)
    is cross-validated with and without them on the same folds, and they go when the mean
    fold-by-fold difference (without minus with) is not below minus one standard error of
    that difference: a difference the folds cannot tell apart goes to the simpler model, as in
    the choice of the model family. Otherwise they are kept, with the figures in their
    reason. Returns the decision and the two CV ROC-AUCs and the difference's standard error.

    The differences at stake are often as small as the noise of one draw of the folds, so
    notebook 06 gives repeated folds (:func:`~leadscoring.training.compare.cv_splitter` with
    ``repeats``): the answer then no longer turns on which leads fell in which fold."""
    t = decision.copy()
    reasons = t["reason"].astype(str)
    candidate = ~t["keep"] & reasons.str.startswith(CANDIDATE_REASONS)
    if not candidate.any():
        return t, {}
    kept = t.loc[t["keep"], "variable"].tolist()
    dropped = t.loc[candidate, "variable"].tolist()
    with_ = cross_val_score(recipe([*kept, *dropped]), X, y, cv=cv, scoring="roc_auc", n_jobs=FIT_PROCESSES)
    without = cross_val_score(recipe(kept), X, y, cv=cv, scoring="roc_auc", n_jobs=FIT_PROCESSES)
    diff = without - with_
    # Repeated draws test the same leads again: their folds are not independent, so the
    # standard error counts the folds of one draw (the tie band of a single draw, around a
    # mean that no longer turns on the draw).
    per_draw = len(diff) // int(getattr(cv, "n_repeats", 1))
    se = float(np.std(diff, ddof=1) / np.sqrt(per_draw)) if len(diff) > 1 else 0.0
    auc_with, auc_without = float(with_.mean()), float(without.mean())
    figures = {"cv_roc_auc_with": auc_with, "cv_roc_auc_without": auc_without, "difference_se": se}
    told = (
        f"CV ROC-AUC over {len(diff)} folds without {fixed(auc_without, 4)}, with {fixed(auc_with, 4)} "
        f"(difference {fixed(diff.mean(), 5, signed=True)}, one standard error {fixed(se, 5)})"
    )
    if diff.mean() >= -se:
        t.loc[candidate, "reason"] = reasons[candidate] + f"; {told}: no better with it"
    else:
        t.loc[candidate, "keep"] = True
        t.loc[candidate, "reason"] = "kept: " + reasons[candidate] + f", but {told}: better with it"
    return t, figures
