"""Letter grades from the score: by configured score ranges, by shares of leads, or by the
sales team's capacity (``scoring.grades``).

Share and capacity thresholds are learned once, from the training leads' scores as the model
scores leads it never saw (:func:`new_lead_probabilities`: out of fold; notebook 07), and
stored with the model, so a lead's grade does not depend on the batch it is scored in.
:func:`grade_table` and :func:`grade_choices` show what a choice yields: calls, conversions
reached, precision (notebook 09).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from leadscoring.config import Bucket, GradesConfig, ProjectConfig
from leadscoring.errors import LeadDataError


def new_lead_probabilities(model: Any, X: pd.DataFrame, y: Sequence[int] | pd.Series, cv: Any) -> np.ndarray:
    """Each training lead's probability from a copy of ``model`` (fitted or not: it is cloned)
    trained without it, over the folds of ``cv`` in which every lead is tested once
    (:func:`~leadscoring.training.compare.partition_cv`): how the model scores leads it never
    saw. Share and capacity thresholds are learned on these: a model spreads the scores of the
    leads it learned from further apart than new leads', so a grade sized on them to 10 % of
    the leads holds fewer new ones (7-8 % for a boosted model), and sales capacity goes unused."""
    from leadscoring.training.compare import out_of_fold, partition_cv

    return out_of_fold(model, X, np.asarray(y), partition_cv(cv))


def weekly_volume(dates: pd.Series) -> float:
    """Leads per week over the span of ``dates`` (creation dates of the training leads)."""
    d = pd.to_datetime(dates, errors="coerce").dropna()
    if len(d) < 2:
        raise LeadDataError(
            "grades.calls_per_week: cannot measure leads per week (fewer than two dates); set grades.leads_per_week"
        )
    weeks = max((d.max() - d.min()).total_seconds() / (7 * 86400), 1.0)
    return float(len(d) / weeks)


def grade_shares(grades: GradesConfig, leads_per_week: float | None = None) -> list[float]:
    """Share of leads per grade, best first: the configured shares, or from capacity the
    first grade gets ``calls_per_week / leads_per_week`` and the others split the rest in
    proportion to ``shares`` (equal parts when unset)."""
    n = len(grades.names)
    if grades.method == "shares":
        return list(grades.shares or [])
    if grades.method != "capacity":
        raise ValueError("grade shares exist only for the shares and capacity methods")
    volume = grades.leads_per_week or leads_per_week
    if not volume:
        raise LeadDataError("grades.calls_per_week needs the weekly lead volume: set grades.leads_per_week or data.date_column")
    first = min(float(grades.calls_per_week or 0) / volume, 1.0)
    rest = np.asarray(grades.shares[1:] if grades.shares else [1.0] * (n - 1), dtype=float)
    return [first, *((1.0 - first) * rest / rest.sum()).tolist()]


def thresholds_from_shares(scores: Sequence[int] | np.ndarray, shares: Sequence[float]) -> list[int]:
    """Minimum score per grade (best first, the last 0) so that each grade and those above
    it hold at most their cumulative share of ``scores``: grade A never holds more leads
    than the share (the capacity) allows. Ties at a threshold stay together."""
    s = np.asarray(scores, dtype=int)
    at_least = np.cumsum(np.bincount(np.clip(s, 0, 100), minlength=102)[::-1])[::-1]  # leads scoring >= t
    out = []
    for cum in np.cumsum(shares)[:-1]:
        allowed = int(np.floor(cum * len(s) + 1e-9))
        t = int(np.argmax(at_least <= allowed))  # the lowest threshold within the allowance ...
        above = s[s >= t]
        out.append(int(above.min()) if len(above) else t)  # ... raised to the lowest score it lets in
    return [*out, 0]


def learn_grades(
    grades: GradesConfig, train_scores: Sequence[int] | np.ndarray, leads_per_week: float | None = None
) -> dict[str, Any]:
    """The grade definition stored with the model: names, minimum scores, method and the
    share of training leads each grade holds."""
    s = np.asarray(train_scores, dtype=int)
    if grades.method == "ranges":
        mins = list(grades.min_scores)
    else:
        mins = thresholds_from_shares(s, grade_shares(grades, leads_per_week))
    info: dict[str, Any] = {"names": list(grades.names), "min_scores": mins, "method": grades.method}
    if grades.method == "capacity":
        info["calls_per_week"] = grades.calls_per_week
        info["leads_per_week"] = grades.leads_per_week or leads_per_week
    counts = np.bincount(grade_index(s, mins), minlength=len(mins))
    info["training_shares"] = [round(float(x), 4) for x in counts / max(len(s), 1)]
    return info


def grade_definition(grades: GradesConfig, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The grades a model's scores get: the thresholds learned with the model (shares,
    capacity; in its manifest), else the configured ranges."""
    learned = manifest.get("grades")
    return dict(learned) if learned and learned.get("method") != "ranges" else learn_grades(grades, [])


def grade_bucket_conflict(definition: Mapping[str, Any], buckets: Sequence[Bucket]) -> str:
    """A warning when the best grade starts below the top bucket: its leads between the two
    thresholds are told to be called first by their grade and given a lesser action by their
    bucket (grades learned from shares of the leads, buckets drafted from the conversion
    rate); '' when they agree."""
    names, mins = list(definition.get("names", [])), list(definition.get("min_scores", []))
    parts = buckets_over(mins[0], 100, buckets) if names else []
    if len(parts) < 2:
        return ""
    top = buckets[0]
    below = [b for b, _, _ in parts[1:]]  # the lower buckets covering scores mins[0] .. top.min_score - 1
    actions = " and ".join(f"{b.name} ({b.action})" for b in below)
    return (
        f"grade {names[0]} starts at score {mins[0]} but bucket {top.name} ({top.action}) at {top.min_score}: grade-{names[0]} "
        f"leads scoring {mins[0]}-{top.min_score - 1} get the action of bucket{'s' if len(below) > 1 else ''} {actions}. "
        f"Align them: scoring.buckets' {top.name} from {mins[0]}, or grades whose {names[0]} starts at {top.min_score} or above"
    )


def grade_actions(definition: Mapping[str, Any], buckets: Sequence[Bucket]) -> list[str]:
    """Per grade (best first), what its leads are told to do: the action of each bucket its
    score range overlaps, as every score output carries it (``recommended_action``), with the
    scores of each part when the grade spans buckets, e.g. ``"Nurture with sales email (WARM,
    scores 18-25); Automated marketing (COLD, scores 15-17)"``. A grade whose range is empty
    (its minimum reached by the grade above) gets ``"-"``. One source of what to do with a
    lead: the buckets; a grade is where the lead stands in the queue."""
    mins = list(definition.get("min_scores") or [])
    names = list(definition.get("names") or [])
    if len(mins) != len(names):  # (a model saved without its grades' thresholds)
        return ["-"] * len(names)
    out = []
    for i, low in enumerate(mins):
        parts = buckets_over(low, 100 if i == 0 else mins[i - 1] - 1, buckets)
        if not parts:
            out.append("-")
        elif len(parts) == 1:
            out.append(f"{parts[0][0].action} ({parts[0][0].name})")
        else:
            out.append("; ".join(f"{b.action} ({b.name}, scores {lo}-{hi})" for b, lo, hi in parts))
    return out


def buckets_over(low: int, high: int, buckets: Sequence[Bucket]) -> list[tuple[Bucket, int, int]]:
    """The buckets (best first) whose scores overlap ``low`` .. ``high``, each with the part
    of that range it covers (a bucket runs from its ``min_score`` up to the one above it)."""
    tops = [100, *[b.min_score - 1 for b in buckets[:-1]]]
    return [
        (b, max(low, b.min_score), min(high, top))
        for b, top in zip(buckets, tops, strict=True)
        if max(low, b.min_score) <= min(high, top)
    ]


def grade_index(scores: Sequence[int] | np.ndarray, min_scores: Sequence[int]) -> np.ndarray:
    """Position of each score's grade: the first whose minimum it reaches."""
    s = np.asarray(scores)
    mins = np.asarray(min_scores)
    return (s[:, None] < mins[None, :]).sum(axis=1) if len(s) else np.zeros(0, dtype=int)


def assign_grades(scores: Sequence[int] | np.ndarray, definition: Mapping[str, Any]) -> np.ndarray:
    """Grade name per score from a learned definition (:func:`learn_grades`)."""
    names = np.asarray(definition["names"], dtype=object)
    return names[grade_index(scores, definition["min_scores"])]


def grade_table(y: Sequence[int], scores: Sequence[int] | np.ndarray, definition: Mapping[str, Any]) -> pd.DataFrame:
    """Per grade: minimum score, leads, share, conversions, conversion rate, and cumulative
    calls, conversions reached and share of all conversions when calling down to it."""
    y_arr = np.asarray(y, dtype=int)
    idx = grade_index(scores, definition["min_scores"])
    n_grades = len(definition["names"])
    leads = np.bincount(idx, minlength=n_grades)
    conv = np.bincount(idx, weights=y_arr, minlength=n_grades).astype(int)
    total = max(int(y_arr.sum()), 1)
    return pd.DataFrame(
        {
            "grade": definition["names"],
            "min_score": definition["min_scores"],
            "leads": leads,
            "share": leads / max(len(y_arr), 1),
            "conversions": conv,
            "conversion_rate": np.divide(conv, leads, out=np.full(n_grades, np.nan), where=leads > 0),
            "calls_down_to_here": np.cumsum(leads),
            "conversions_reached": np.cumsum(conv),
            "share_of_conversions": np.cumsum(conv) / total,
        }
    )


def grade_choices(y: Sequence[int], scores: Sequence[int] | np.ndarray, choices: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """What calling the first grade yields under each choice of grades: calls, conversions
    reached, precision and share of all conversions (one row per choice)."""
    rows = []
    for name, definition in choices.items():
        first = grade_table(y, scores, definition).iloc[0]
        rows.append(
            {
                "choice": name,
                "first_grade_min_score": int(first["min_score"]),
                "calls": int(first["leads"]),
                "conversions_reached": int(first["conversions"]),
                "precision": first["conversion_rate"],
                "share_of_conversions": first["share_of_conversions"],
            }
        )
    return pd.DataFrame(rows)


def grades_for(cfg: ProjectConfig, train_scores: Sequence[int] | np.ndarray, leads: pd.DataFrame) -> dict[str, Any]:
    """:func:`learn_grades` from the configuration; for capacity without
    ``grades.leads_per_week`` the weekly volume is measured on ``leads``' ``data.date_column``."""
    g = cfg.scoring.grades
    volume = None
    if g.method == "capacity" and not g.leads_per_week:
        if not cfg.data.date_column or cfg.data.date_column not in leads.columns:
            raise LeadDataError("grades.calls_per_week needs the weekly lead volume: set grades.leads_per_week or data.date_column")
        volume = weekly_volume(leads[cfg.data.date_column])
    return learn_grades(g, train_scores, volume)


def standard_choices(
    cfg: ProjectConfig, train_scores: Sequence[int] | np.ndarray, leads: pd.DataFrame, weekly_calls: Sequence[float] = ()
) -> dict[str, dict[str, Any]]:
    """Grade choices to compare (notebook 09), all learned on the same training scores: the
    configured one, quartiles (as HubSpot), 10/20/30/40 % (as MadKudu), and for each of
    ``weekly_calls`` the capacity choice when the weekly volume is known."""
    names = list(cfg.scoring.grades.names) if len(cfg.scoring.grades.names) == 4 else ["A", "B", "C", "D"]
    choices = {
        "configured": grades_for(cfg, train_scores, leads),
        "quartiles": learn_grades(GradesConfig(names=names, shares=[0.25] * 4), train_scores),
        "10/20/30/40 %": learn_grades(GradesConfig(names=names, shares=[0.1, 0.2, 0.3, 0.4]), train_scores),
    }
    volume = cfg.scoring.grades.leads_per_week
    if volume is None and cfg.data.date_column and cfg.data.date_column in leads.columns:
        volume = weekly_volume(leads[cfg.data.date_column])
    for calls in weekly_calls if volume else ():
        g = GradesConfig(names=names, calls_per_week=calls, leads_per_week=volume)
        choices[f"capacity {calls:g} calls/week"] = learn_grades(g, train_scores)
    return choices
