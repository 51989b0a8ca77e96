"""Metrics and business views of a score: gains, lift, capacity, confusion matrices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    log_loss,
    roc_auc_score,
)

from leadscoring.formats import NumberStyle, percent


def ranking_metrics(y: Sequence[int], score: Sequence[float]) -> dict[str, float]:
    """How well ``score`` ranks leads (any scale): ROC-AUC, average precision, gains at 30 %.
    Brier score and log loss are NaN: they only mean something for probabilities."""
    y_arr, s_arr = np.asarray(y), np.asarray(score, dtype=float)
    return {
        "roc_auc": float(roc_auc_score(y_arr, s_arr)),
        "average_precision": float(average_precision_score(y_arr, s_arr)),
        "brier": float("nan"),
        "log_loss": float("nan"),
        "gain_at_30pct": gain_at(y_arr, s_arr, 0.30),
        "base_rate": float(y_arr.mean()),
        "n": int(len(y_arr)),
    }


def classification_metrics(y: Sequence[int], p: Sequence[float]) -> dict[str, float]:
    """:func:`ranking_metrics` plus Brier score and log loss, for probabilities ``p``."""
    y_arr, p_arr = np.asarray(y), np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    out = ranking_metrics(y_arr, p_arr)
    out.update(
        brier=float(brier_score_loss(y_arr, p_arr)),
        log_loss=float(log_loss(y_arr, p_arr)),
        mean_probability=float(p_arr.mean()),
    )
    return out


def calibration_in_the_large(
    base_rate: float | None,
    mean_probability: float | None,
    n: int | None,
    by_date: bool,
    min_z: float = 3.0,
    min_gap: float = 0.15,
    style: NumberStyle | None = None,
) -> str:
    """One sentence when leads the model never saw convert at a rate its probabilities miss
    beyond chance (``min_z`` binomial standard errors) and by at least ``min_gap`` of the
    expected rate; '' otherwise (or without the figures). ``by_date``: the leads are the
    newest (``data.date_column``), so the gap is the conversion rate moving over time.
    ``style``: how numbers are written (default: the reports' current style)."""
    if base_rate is None or mean_probability is None or not n or not 0 < mean_probability < 1:
        return ""
    se = (mean_probability * (1 - mean_probability) / n) ** 0.5
    gap = base_rate / mean_probability - 1
    if abs(base_rate - mean_probability) < min_z * se or abs(gap) < min_gap:
        return ""
    way = "low" if gap > 0 else "high"
    why = (
        f"the newest leads convert {'more' if gap > 0 else 'less'} than the leads the model learned from"
        if by_date
        else "the model's probabilities are off for leads it never saw"
    )
    return (
        f"The {n} validation leads convert at {percent(base_rate, 1, style)} where the model expects "
        f"{percent(mean_probability, 1, style)} on average: {why}. The ranking (ROC-AUC) is not affected, but probabilities "
        f"and expected conversions read {way} by about {percent(abs(gap), 0, style)}. Retrain when outcomes of recent "
        "leads come back (`leadscoring retrain`)."
    )


def auc_difference(y: Sequence[int], p_a: Sequence[float], p_b: Sequence[float]) -> tuple[float, float]:
    """(ROC-AUC of ``p_a`` minus ROC-AUC of ``p_b``, its standard error) on the same leads,
    by DeLong, DeLong and Clarke-Pearson (1988): the paired test of two scores, whose errors
    on the same leads are correlated. NaN without both classes."""
    from scipy.stats import rankdata

    y_arr = np.asarray(y).astype(bool)
    m, n = int(y_arr.sum()), int((~y_arr).sum())
    if m < 2 or n < 2:
        return float("nan"), float("nan")
    aucs, v10, v01 = [], [], []
    for p in (np.asarray(p_a, dtype=float), np.asarray(p_b, dtype=float)):
        pos, neg = p[y_arr], p[~y_arr]
        both = rankdata(np.concatenate([pos, neg]))
        aucs.append((both[:m].sum() - m * (m + 1) / 2) / (m * n))
        v10.append((both[:m] - rankdata(pos)) / n)  # per converted lead: the share of the others it outranks
        v01.append(1 - (both[m:] - rankdata(neg)) / m)  # per other lead: the share of converted leads above it
    s10, s01 = np.cov(np.vstack(v10)), np.cov(np.vstack(v01))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    return float(aucs[0] - aucs[1]), float(np.sqrt(max(var, 0.0)))


def _order(score: np.ndarray) -> np.ndarray:
    # Highest score first; ties keep input order (stable) so results are reproducible.
    return np.argsort(-np.asarray(score, dtype=float), kind="stable")


def top_conversions(y: Sequence[int], score: Sequence[float], n: int) -> float:
    """Conversions among the ``n`` best-scored leads, leads tied at the cut taken at random:
    every lead scoring above the cut, plus the tied leads' conversion rate times the calls
    left for them. Counting the tied leads in file order would credit a score with whatever
    order the file happens to have (a points table has few distinct scores)."""
    y_arr, s = np.asarray(y, dtype=float), np.asarray(score, dtype=float)
    n = int(min(max(n, 0), len(y_arr)))
    if n == 0:
        return 0.0
    cut = s[_order(s)][n - 1]
    above, tied = s > cut, s == cut
    return float(y_arr[above].sum() + (n - above.sum()) * y_arr[tied].mean())


def gains_table(y: Sequence[int], score: Sequence[float], groups: int = 10) -> pd.DataFrame:
    """Cumulative gains and lift by group (deciles by default), best-scored leads first.

    Leads are sorted by score (descending) and cut into ``groups`` groups of (almost)
    equal size. ``gain`` is the share of all conversions captured up to the group;
    ``lift`` is the group's conversion rate over the base rate; ``cum_lift`` the same
    cumulatively.
    """
    y_arr = np.asarray(y, dtype=float)
    if len(y_arr) < groups:
        raise ValueError(f"need at least {groups} leads for {groups} groups, got {len(y_arr)}")
    sizes = [len(part) for part in np.array_split(np.arange(len(y_arr)), groups)]
    total, base = y_arr.sum(), y_arr.mean()
    rows, cum_n, cum_pos = [], 0, 0.0
    for i, size in enumerate(sizes, start=1):
        cum_n += size
        reached = top_conversions(y_arr, score, cum_n)  # leads tied across a boundary shared in proportion
        conversions, cum_pos = reached - cum_pos, reached
        rate = conversions / size
        rows.append(
            {
                "group": i,
                "leads": size,
                "conversions": conversions,
                "conversion_rate": rate,
                "cum_leads_share": cum_n / len(y_arr),
                "gain": cum_pos / total if total else np.nan,
                "lift": rate / base if base else np.nan,
                "cum_lift": (cum_pos / cum_n) / base if base else np.nan,
            }
        )
    return pd.DataFrame(rows)


def gain_at(y: Sequence[int], score: Sequence[float], share: float) -> float:
    """Share of all conversions found in the top ``share`` of leads by score (ties at the cut:
    :func:`top_conversions`)."""
    y_arr = np.asarray(y, dtype=float)
    n = int(round(share * len(y_arr)))
    return top_conversions(y_arr, score, n) / y_arr.sum() if y_arr.sum() else float("nan")


def capacity_table(y: Sequence[int], scores: Mapping[str, Sequence[float]], capacities: Sequence[int]) -> pd.DataFrame:
    """If sales can call ``N`` leads, how many conversions each strategy reaches.

    ``random`` is the expectation N × base rate; for each named score the leads are
    called best first (ties at the cut: :func:`top_conversions`, rounded to a tenth);
    ``threshold_<name>`` is the lowest score that still gets a call.
    """
    y_arr = np.asarray(y, dtype=float)
    rows = []
    for n in capacities:
        n = int(min(n, len(y_arr)))
        row: dict[str, float] = {"calls": n, "random": round(n * y_arr.mean(), 1)}
        for name, s in scores.items():
            s_arr = np.asarray(s, dtype=float)
            order = _order(s_arr)
            row[name] = round(top_conversions(y_arr, s_arr, n), 1)
            row[f"threshold_{name}"] = float(s_arr[order][n - 1]) if n else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def confusion_at_thresholds(y: Sequence[int], score: Sequence[float], thresholds: Sequence[float]) -> pd.DataFrame:
    """Confusion matrix counts, precision and recall when leads with score ≥ t are called."""
    y_arr, s = np.asarray(y), np.asarray(score, dtype=float)
    rows = []
    for t in thresholds:
        pred = (s >= t).astype(int)
        tn, fp, fn, tp = confusion_matrix(y_arr, pred, labels=[0, 1]).ravel()
        rows.append(
            {
                "threshold": t,
                "called": int(tp + fp),
                "tp": int(tp),
                "fp": int(fp),
                "fn": int(fn),
                "tn": int(tn),
                "precision": tp / (tp + fp) if tp + fp else np.nan,
                "recall": tp / (tp + fn) if tp + fn else np.nan,
            }
        )
    return pd.DataFrame(rows)


def calibration_table(y: Sequence[int], p: Sequence[float], bins: int = 10) -> pd.DataFrame:
    """Mean predicted probability vs observed rate per equal-width probability bin."""
    df = pd.DataFrame({"y": np.asarray(y, dtype=float), "p": np.asarray(p, dtype=float)})
    df["bin"] = pd.cut(df["p"], np.linspace(0, 1, bins + 1), include_lowest=True)
    out = df.groupby("bin", observed=True).agg(leads=("y", "size"), predicted=("p", "mean"), observed=("y", "mean"))
    return out.reset_index()
