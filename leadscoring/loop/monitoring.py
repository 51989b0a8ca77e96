"""Is it working? How past scores fared once their outcomes came back, drift, and the A/B test.

**The measures** (used by ``retrain`` and the monitoring report alike): the population
stability index (:func:`psi`, :func:`psi_from_counts`), the A/B lift with its confidence
intervals (:func:`ab_lift`), the interval of a cohort's expected conversions
(:func:`expected_interval`) and ROC-AUC and Brier score from counts per score
(:func:`auc_from_counts`, :func:`brier_from_counts`).

**The monitoring report** (``leadscoring monitor``, the last step of ``leadscoring cycle``):
:func:`build_monitoring` reads the score history, the outcome history and the training
reference; :func:`write_monitoring` writes ``monitoring.html`` (for people, no code: the page
is :mod:`leadscoring.loop.monitoring_page`) and ``monitoring.json`` (the same figures as data)
in ``paths.results_dir``.

- A lead belongs to the *cohort* (``monitoring.cohort``: week, Monday to Sunday UTC, or month)
  of its first scoring; its probability is that scoring's score / 100 (the score history keeps
  the score, the probability rounded to 0.01), its model version that scoring's.
- Its outcome is its latest state in the outcome history as of the report's time (a change
  after it is not seen): converted, lost, or open. An open lead (or one the CRM never reported)
  first scored at least ``monitoring.maturity_days`` before counts as not converted
  (*aged*); a younger one is *open*, neither converted nor lost. The *counted* leads are the
  converted, lost and aged ones. A lead closed before its first scoring is left out of the
  evaluation (its score may have seen the outcome) and reported.
- A cohort is *complete* when none of its leads is still young and open. Calibration,
  ROC-AUC alerts and the A/B totals use complete cohorts only: in a maturing cohort the leads
  closed so far are the quick ones, not a fair sample.
- Per cohort: leads, the share with a final outcome (converted or lost), conversion of the
  counted leads per grade (the current model's grades) and per bucket, expected conversions
  (the sum of the counted leads' probabilities) against the observed, with an interval
  (normal approximation of the sum of Bernoulli outcomes), ROC-AUC and Brier score where each
  class has ``monitoring.min_per_class`` leads, the median days from first scoring to the
  outcome, the model version(s), and, with an ``experiment_group`` in the score history,
  treatment against control.
- Drift: the population stability index of the score and of each recorded input (the score
  history's ``inputs``) of the period's leads (each once, at its first scoring in it), against the training reference (the
  leads of the last retraining, else the working split the model was trained on; the score's
  reference is the current model's scores of those leads).
- Alerts: a ROC-AUC ``monitoring.auc_drop`` below the model's validation ROC-AUC (the cohort's
  whole Hanley-McNeil interval below it: a small cohort's ROC-AUC is noisy), observed
  conversions outside their interval, a PSI above ``monitoring.psi_alert`` (cohorts of at least
  ``monitoring.min_leads``), and a lift not significant (or a treatment converting less than
  the control group) once the A/B test has ``monitoring.lift_min_outcomes`` outcomes.

Bad input (an unreadable history, an outcome for a lead never scored, a cohort with one
class, an empty history) is a line in the report's notes, never a traceback. The heavy
grouping runs in DuckDB over the history's parquet files; what comes back is counts per
cohort and score, so the report costs little memory whatever the history's size.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from leadscoring.artifacts import MONITORING_DATA, MONITORING_REPORT, SCORE_MODEL, load_model
from leadscoring.config import ProjectConfig
from leadscoring.crm.outcomes import latest_rows, read_outcome_history
from leadscoring.errors import LeadDataError, first_line, one_line
from leadscoring.formats import count, number, percent
from leadscoring.ingest.schema import LeadSchema, text
from leadscoring.ingest.values import map_unique
from leadscoring.io import read_json_object, write_json, write_text
from leadscoring.loop.maturity import utc_stamp
from leadscoring.serving.experiment import CONTROL, TREATMENT  # the A/B test's groups, drawn at scoring time
from leadscoring.serving.history import history_files
from leadscoring.serving.scorer import assign_buckets, to_score
from leadscoring.training.grades import grade_definition, grade_index

log = logging.getLogger(__name__)

PSI_WATCH, PSI_ALERT = 0.1, 0.25
#: Bins of a numeric variable's PSI (deciles of the reference), and the floor of a bin's share.
PSI_BINS, PSI_EPS = 10, 1e-4
#: Fewest current leads a PSI bin must expect at the reference's shares; smaller bins join their neighbours.
PSI_MIN_EXPECTED = 20
#: The name of the score in the drift tables (the inputs go by their column names).
SCORE = "score"
#: A lead's state in the report (see the module): counted ones first.
STATES = ("converted", "lost", "aged", "young", "before")
#: Cohorts shown in the drift table (the latest), and examples named in a note.
DRIFT_COHORTS_SHOWN, EXAMPLES = 8, 5


# -- the measures ---------------------------------------------------------------------------


def numeric_edges(reference: Sequence[Any] | pd.Series, bins: int = PSI_BINS) -> np.ndarray:
    """The inner edges of the PSI bins of a numeric variable: the quantiles of ``reference``
    (deciles by default; tied quantiles merge), empty when it has no value."""
    r = pd.to_numeric(pd.Series(reference), errors="coerce").dropna()
    if r.empty:
        return np.array([])
    edges = np.unique(np.nanquantile(r.to_numpy(dtype=float), np.linspace(0, 1, bins + 1)))
    return edges[1:-1]


def numeric_bins(values: Sequence[Any] | np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Each value's PSI bin: 0 .. len(inner) by the edges ``inner`` (a value on an edge goes
    up), ``len(inner) + 1`` for a missing value."""
    v = np.asarray(values, dtype=float)
    return np.where(np.isnan(v), len(inner) + 1, np.searchsorted(inner, v, side="right")).astype(int)


def psi_from_counts(
    expected: Sequence[float] | np.ndarray,
    actual: Sequence[float] | np.ndarray,
    eps: float = PSI_EPS,
    min_expected: float = PSI_MIN_EXPECTED,
) -> float:
    """PSI = Σ (a - e) · ln(a / e) over bins, from the counts per bin of the reference
    (``expected``) and of the current leads (``actual``); shares floored at ``eps``. NaN when
    either has no lead.

    Neighbouring bins are merged until the current leads would hold at least
    ``min_expected`` of them at the reference's shares: a cohort's share of a rare level (or
    of each of many levels) is mostly chance, and a PSI summed over such bins crosses the
    alert with no drift at all (40 equal levels, 100 leads: about 0.7). Bins the reference
    never filled (a new level, missing values that were never missing) stay on their own: any
    share of them is news. NaN when a cohort is too small for two bins."""
    e, a = np.asarray(expected, dtype=float), np.asarray(actual, dtype=float)
    if e.sum() <= 0 or a.sum() <= 0:
        return float("nan")
    seen = e > 0
    merged_e, merged_a = _merge_small_bins(e[seen], a[seen], min_expected * e.sum() / a.sum())
    if len(merged_e) < 2:
        return float("nan")
    e, a = np.append(merged_e, e[~seen]), np.append(merged_a, a[~seen])
    pe, pa = np.maximum(e / e.sum(), eps), np.maximum(a / a.sum(), eps)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def _merge_small_bins(e: np.ndarray, a: np.ndarray, least: float) -> tuple[np.ndarray, np.ndarray]:
    """``e`` and ``a`` with neighbouring bins summed until each holds at least ``least`` of
    ``e`` (a small remainder joins the last group)."""
    if (e >= least).all():
        return e, a
    group = np.zeros(len(e), dtype=int)
    g, held = 0, 0.0
    for i, v in enumerate(e):
        group[i] = g
        held += v
        if held >= least:
            g, held = g + 1, 0.0
    if held < least and g > 0:  # the last bins fell short: they join the group before them
        group[group == g] = g - 1
    size = int(group.max()) + 1
    return np.bincount(group, weights=e, minlength=size), np.bincount(group, weights=a, minlength=size)


def _level_text(values: Sequence[Any] | pd.Series) -> pd.Series:
    s = pd.Series(values)
    return s.astype(object).where(s.notna(), "Missing").astype(str)


def category_counts(values: Sequence[Any] | pd.Series, levels: Sequence[str]) -> np.ndarray:
    """Counts per level of ``levels`` (missing values as ``Missing``), then of all others."""
    counts = _level_text(values).value_counts()
    known = np.array([counts.get(lv, 0) for lv in levels], dtype=float)
    return np.append(known, counts.sum() - known.sum())


def psi(expected: Sequence[Any], actual: Sequence[Any], *, numeric: bool, bins: int = PSI_BINS, eps: float = PSI_EPS) -> float:
    """Population stability index of ``actual`` against ``expected``.

    Numeric: decile bins of ``expected`` (missing values are a bin of their own);
    categorical: the levels of ``expected``, unseen levels pooled as one more bin.
    PSI = Σ (a - e) · ln(a / e) over bins (small neighbouring bins merged, see
    :func:`psi_from_counts`), shares floored at ``eps``.
    """
    if numeric:
        e = pd.to_numeric(pd.Series(expected), errors="coerce")
        a = pd.to_numeric(pd.Series(actual), errors="coerce")
        inner = numeric_edges(e, bins)
        size = len(inner) + 2
        ce = np.bincount(numeric_bins(e, inner), minlength=size)
        ca = np.bincount(numeric_bins(a, inner), minlength=size)
    else:
        levels = list(_level_text(expected).unique())
        ce, ca = category_counts(expected, levels), category_counts(actual, levels)
    if len(expected) == 0 or len(actual) == 0:
        return float("nan")
    return psi_from_counts(ce, ca, eps)


def drift_level(value: float, watch: float = PSI_WATCH, alert: float = PSI_ALERT) -> str:
    """``alert`` above ``alert`` (as the alert lines), ``watch`` from ``watch`` up, else ``stable``."""
    return "alert" if value > alert else ("watch" if value >= watch else "stable")


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    scores: tuple[Sequence[float], Sequence[float]] | None = None,
) -> pd.DataFrame:
    """PSI per variable (and of the score) between reference (training) and current leads."""
    rows = []
    for col in [*numeric, *categorical]:
        if col in reference.columns and col in current.columns:
            v = psi(reference[col], current[col], numeric=col in numeric)
            rows.append({"variable": col, "psi": v, "level": drift_level(v)})
    if scores is not None:
        v = psi(scores[0], scores[1], numeric=True)
        rows.append({"variable": SCORE, "psi": v, "level": drift_level(v)})
    return pd.DataFrame(rows).sort_values("psi", ascending=False).reset_index(drop=True)


def _z(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


def ab_lift(
    control_conversions: int, control_n: int, treatment_conversions: int, treatment_n: int, confidence: float = 0.95
) -> dict[str, float]:
    """Conversion lift of a treatment over a control group.

    Returns both rates, the absolute difference with Newcombe's hybrid score interval (built
    from each rate's Wilson interval: it keeps its coverage with small groups and rates near 0,
    where the Wald interval is far too narrow), the relative lift (treatment / control - 1) with
    a log-ratio (Katz) interval, and ``significant`` (1.0 when the difference's interval
    excludes 0, else 0.0).
    """
    if min(control_n, treatment_n) <= 0:
        raise ValueError("both groups need at least one lead")
    z = _z(confidence)
    pc, pt = control_conversions / control_n, treatment_conversions / treatment_n
    (lc, uc), (lt, ut) = _wilson(pc, control_n, z), _wilson(pt, treatment_n, z)
    out = {
        "control_rate": pc,
        "treatment_rate": pt,
        "difference": pt - pc,
        "difference_low": pt - pc - math.sqrt((pt - lt) ** 2 + (uc - pc) ** 2),
        "difference_high": pt - pc + math.sqrt((ut - pt) ** 2 + (pc - lc) ** 2),
    }
    if control_conversions > 0 and treatment_conversions > 0:
        rr = pt / pc
        se_log = math.sqrt(1 / treatment_conversions - 1 / treatment_n + 1 / control_conversions - 1 / control_n)
        out.update(lift=rr - 1, lift_low=rr * math.exp(-z * se_log) - 1, lift_high=rr * math.exp(z * se_log) - 1)
    else:
        out.update(lift=float("nan"), lift_low=float("nan"), lift_high=float("nan"))
    out["significant"] = float(out["difference_low"] > 0 or out["difference_high"] < 0)
    return out


def _wilson(p: float, n: int, z: float) -> tuple[float, float]:
    """Wilson's score interval of a proportion ``p`` observed on ``n`` leads."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def expected_interval(expected: float, variance: float, confidence: float = 0.95) -> tuple[float, float]:
    """The interval of a sum of independent Bernoulli outcomes with mean ``expected`` (Σ p)
    and ``variance`` (Σ p(1-p)): ``expected ± z·√variance``, at least 0."""
    half = _z(confidence) * math.sqrt(max(variance, 0.0))
    return max(expected - half, 0.0), expected + half


def auc_from_counts(positives: Sequence[float] | np.ndarray, negatives: Sequence[float] | np.ndarray) -> float:
    """ROC-AUC of a score from the number of converted (``positives``) and not converted
    (``negatives``) leads at each score value, in ascending score order (ties count one half);
    NaN without both classes."""
    pos, neg = np.asarray(positives, dtype=float), np.asarray(negatives, dtype=float)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    below = np.cumsum(neg) - neg
    return float(np.sum(pos * (below + 0.5 * neg)) / (n_pos * n_neg))


def auc_interval(auc: float, positives: int, negatives: int, confidence: float = 0.95) -> tuple[float, float]:
    """Hanley and McNeil's (1982) interval of a ROC-AUC measured on ``positives`` converted and
    ``negatives`` not converted leads; NaN for a NaN ROC-AUC."""
    if math.isnan(auc) or positives < 1 or negatives < 1:
        return float("nan"), float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (positives * negatives)
    half = _z(confidence) * math.sqrt(max(var, 0.0))
    return max(auc - half, 0.0), min(auc + half, 1.0)


def brier_from_counts(
    probabilities: Sequence[float] | np.ndarray, positives: Sequence[float] | np.ndarray, negatives: Sequence[float] | np.ndarray
) -> float:
    """Brier score from the converted and not converted leads at each probability; NaN without leads."""
    p = np.asarray(probabilities, dtype=float)
    pos, neg = np.asarray(positives, dtype=float), np.asarray(negatives, dtype=float)
    n = pos.sum() + neg.sum()
    return float(np.sum(pos * (1 - p) ** 2 + neg * p**2) / n) if n else float("nan")


# -- the report -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """One alert line: its ``kind`` (auc, calibration, drift, lift), the cohorts concerned, the
    variable (drift), the condition (calibration: ``above`` or ``below``; lift: ``not
    significant`` or ``negative``, with the experiment it is about), and the sentence people
    read."""

    kind: Literal["auc", "calibration", "drift", "lift"]
    message: str
    cohorts: tuple[str, ...] = ()
    variable: str | None = None
    condition: str = ""

    @property
    def key(self) -> str:
        """What the alert is about, without its figures (which move as outcomes come in): the
        same key on the next report is the same alert."""
        return "\x1f".join((self.kind, self.variable or "", self.condition, *self.cohorts))


@dataclass
class MonitoringReport:
    """What :func:`build_monitoring` found (see the module). Frames are tidy (one row per
    cohort, or per cohort and grade / bucket / variable / group); ``notes`` are the lines on
    bad or missing input; ``alerts`` the thresholds crossed. Left out, the figures are those of
    a report with no scored lead (empty frames, no model)."""

    now: datetime
    cohort: Literal["week", "month"]
    settings: dict[str, Any]
    model: dict[str, Any] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=lambda: {"leads": 0})
    cohorts: pd.DataFrame = field(default_factory=pd.DataFrame)
    grades: pd.DataFrame = field(default_factory=pd.DataFrame)
    buckets: pd.DataFrame = field(default_factory=pd.DataFrame)
    drift: pd.DataFrame = field(default_factory=pd.DataFrame)
    model_changes: pd.DataFrame = field(default_factory=pd.DataFrame)
    ab: pd.DataFrame | None = None
    ab_total: dict[str, Any] | None = None
    alerts: list[Alert] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reference: str = ""

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (NaN as null, times ISO 8601 UTC)."""

        def records(frame: pd.DataFrame | None) -> list[dict[str, Any]] | None:
            if frame is None:
                return None
            return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]

        return {
            "generated_at": _iso(self.now),
            "cohort": self.cohort,
            "settings": self.settings,
            "model": {k: _plain(v) for k, v in self.model.items()},
            "reference": self.reference,
            "totals": {k: _plain(v) for k, v in self.totals.items()},
            "alerts": [
                {"kind": a.kind, "message": a.message, "cohorts": list(a.cohorts), "variable": a.variable, "condition": a.condition}
                for a in self.alerts
            ],
            "notes": list(self.notes),
            "cohorts": records(self.cohorts),
            "grades": records(self.grades),
            "buckets": records(self.buckets),
            "drift": records(self.drift),
            "model_changes": records(self.model_changes),
            "ab_test": None
            if self.ab is None
            else {"total": {k: _plain(v) for k, v in (self.ab_total or {}).items()} or None, "cohorts": records(self.ab)},
        }


def _iso(when: Any) -> str:
    return utc_stamp(when).isoformat().replace("+00:00", "Z")


def _plain(v: Any) -> Any:
    """A value as JSON has it: NaN and NaT as null, numpy numbers as numbers, times as text."""
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if v is None or v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp | datetime):
        return _iso(v)
    if isinstance(v, np.bool_ | bool):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return None if math.isnan(float(v)) else float(v)
    return v


def _utc(when: datetime | str | pd.Timestamp | None) -> pd.Timestamp:
    return utc_stamp(datetime.now(UTC) if when is None else when)


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_time(when: pd.Timestamp) -> str:
    return f"TIMESTAMPTZ '{when.strftime('%Y-%m-%d %H:%M:%S.%f')}+00'"


class _History:
    """The score history in DuckDB: a view ``hist`` (lead_id, score, model_version, scored_at,
    grp, inputs) of the scorings up to the report's time."""

    def __init__(self, files: Sequence[Path], now: pd.Timestamp) -> None:
        import duckdb

        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET enable_progress_bar = false")  # a long query draws one on stdout otherwise
        listed = "[" + ", ".join(_sql_text(str(f)) for f in files) + "]"
        source = f"read_parquet({listed}, union_by_name = true)"
        present = {r[0] for r in self.con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        self.has_groups = "experiment_group" in present
        self.has_inputs = "inputs" in present
        grp = "CAST(experiment_group AS VARCHAR)" if self.has_groups else "CAST(NULL AS VARCHAR)"
        inputs = "CAST(inputs AS VARCHAR)" if self.has_inputs else "CAST(NULL AS VARCHAR)"
        self.con.execute(
            f"CREATE VIEW hist AS SELECT CAST(lead_id AS VARCHAR) AS lead_id, CAST(score AS INTEGER) AS score, "
            f"CAST(model_version AS VARCHAR) AS model_version, CAST(scored_at AS TIMESTAMPTZ) AS scored_at, "
            f"{grp} AS grp, {inputs} AS inputs FROM {source} WHERE scored_at <= {_sql_time(now)}"
        )
        if self.has_inputs:  # parts always have the column now; scorings without inputs hold nulls
            self.has_inputs = bool(self.con.execute("SELECT 1 FROM hist WHERE inputs IS NOT NULL LIMIT 1").fetchall())

    def frame(self, sql: str) -> pd.DataFrame:
        return self.con.execute(sql).df()


def _cohort_label(start: pd.Timestamp, unit: str) -> str:
    return start.strftime("%Y-%m") if unit == "month" else start.strftime("%Y-%m-%d")


def _cohort_end(start: pd.Timestamp, unit: str) -> pd.Timestamp:
    return start + (pd.DateOffset(months=1) if unit == "month" else pd.Timedelta(days=7))


def _model(cfg: ProjectConfig, notes: list[str]) -> tuple[Any, dict[str, Any]]:
    """The current scoring model and its manifest (None, {} with a note when unreadable)."""
    path = cfg.path("models_dir") / SCORE_MODEL
    if not path.is_file():
        notes.append(f"No scoring model in {path.parent}: the grades are the configured ranges and the score's drift is left out.")
        return None, {}
    try:
        return load_model(path)
    except Exception as exc:  # an unreadable or tampered model is a line in the report, not a traceback
        notes.append(f"The scoring model {path} could not be read ({first_line(exc)}): the score's drift is left out.")
        return None, {}


def training_reference(cfg: ProjectConfig, manifest: Mapping[str, Any]) -> tuple[pd.DataFrame | None, str]:
    """The leads the current model learned from, and what they are: the leads of the last
    retraining (``work_dir/history.parquet``) for a retrained model, else the working split
    (``work_dir/work.parquet``); None when neither is there."""
    work = cfg.path("work_dir")
    candidates = []
    if manifest.get("retrained_at"):
        candidates.append((work / "history.parquet", "the leads of the model's last retraining"))
    candidates.append((work / "work.parquet", "the working split the model was trained on"))
    for path, what in candidates:
        if path.is_file():
            return pd.read_parquet(path), f"{what} ({path.name})"
    return None, ""


def _outcomes(cfg: ProjectConfig, now: pd.Timestamp, notes: list[str], history: pd.DataFrame | None) -> pd.DataFrame | None:
    """Each lead's latest outcome as of ``now``: lead_id, outcome, closed_at (the outcome's
    time, else the change's), from ``history`` (the outcome history's frame) or, when None,
    the file. None, with a note, when the outcome history cannot be read: counting every
    lead open would make figures and alerts that are false."""
    empty = pd.DataFrame({"lead_id": pd.Series([], dtype=str), "outcome": pd.Series([], dtype=str)}).assign(
        closed_at=pd.Series([], dtype="datetime64[us, UTC]")
    )
    path = cfg.path("outcome_history")
    if history is None and path.is_file():
        try:
            history = read_outcome_history(path)
        except LeadDataError as exc:
            notes.append(f"The outcome history could not be read, so nothing is measured until it is mended: {exc}")
            return None
    if history is None or history.empty:
        notes.append(f"No outcome history yet ({path}): every lead counts as open; `leadscoring pull` brings the outcomes.")
        return empty
    later = history["modified_at"] > now
    if later.any():
        log.info("monitoring: %d outcome change(s) after %s not seen", int(later.sum()), now)
    latest = latest_rows(history[~later])
    return pd.DataFrame(
        {
            "lead_id": latest["lead_id"].astype(str),
            "outcome": latest["outcome"].astype(str),
            "closed_at": latest["outcome_at"].fillna(latest["modified_at"]).astype("datetime64[us, UTC]"),
        }
    )


def _empty_report(now: pd.Timestamp, unit: str, notes: list[str], settings: dict[str, Any]) -> MonitoringReport:
    return MonitoringReport(now=now.to_pydatetime(), cohort=unit, settings=settings, notes=notes)  # type: ignore[arg-type]


def build_monitoring(
    cfg: ProjectConfig,
    *,
    cohort: Literal["week", "month"] | None = None,
    now: datetime | str | None = None,
    outcome_history: pd.DataFrame | None = None,
) -> MonitoringReport:
    """The monitoring report of ``cfg``'s project as of ``now`` (default: now; later scorings
    and outcome changes are not seen), per ``cohort`` (default ``monitoring.cohort``); see the
    module. ``outcome_history``: the outcome history when the caller has read it already (the
    cycle, after its pull), else it is read from ``paths.outcome_history``. Bad or missing
    input is a line in ``notes``, never an exception."""
    import duckdb

    mon = cfg.monitoring
    unit = cohort or mon.cohort
    if unit not in ("week", "month"):
        raise ValueError(f"cohort: 'week' or 'month', got {unit!r}")
    at = _utc(now)
    settings = {
        "cohort": unit,
        "min_per_class": mon.min_per_class,
        "maturity_days": mon.maturity_days,
        "confidence": mon.confidence,
        "auc_drop": mon.auc_drop,
        "psi_alert": mon.psi_alert,
        "min_leads": mon.min_leads,
        "lift_min_outcomes": mon.lift_min_outcomes,
    }
    history_path = cfg.path("score_history")
    for attempt in range(5):
        notes: list[str] = []
        try:
            files = history_files(history_path)
        except LeadDataError as exc:
            notes.append(f"The score history could not be read: {exc}")
            return _empty_report(at, unit, notes, settings)
        if not files:
            notes.append(
                f"The score history ({history_path}) is empty: no lead has been scored yet, so there is nothing to monitor."
            )
            return _empty_report(at, unit, notes, settings)
        hist: _History | None = None
        try:
            hist = _History(files, at)
            return _build(cfg, hist, at, unit, notes, settings, outcome_history)
        except (duckdb.Error, LeadDataError) as exc:  # e.g. a corrupt part: DuckDB's own message, on one line
            if attempt < 4 and not all(f.is_file() for f in files):
                continue  # a compaction replaced files just listed: list again
            notes.append(f"The score history ({history_path}) could not be read: {one_line(exc, 300)}")
            return _empty_report(at, unit, notes, settings)
        finally:
            if hist is not None:
                hist.con.close()
    raise AssertionError("unreachable")


def _build(
    cfg: ProjectConfig,
    hist: _History,
    at: pd.Timestamp,
    unit: str,
    notes: list[str],
    settings: dict[str, Any],
    outcome_history: pd.DataFrame | None,
) -> MonitoringReport:
    mon = cfg.monitoring
    labels = cfg.model_data.labels
    model, manifest = _model(cfg, notes)
    grades = grade_definition(cfg.scoring.grades, manifest)
    outcomes = _outcomes(cfg, at, notes, outcome_history)
    if outcomes is None:
        return _empty_report(at, unit, notes, settings)
    hist.con.register("outcomes_df", outcomes)
    cutoff = _sql_time(at - pd.Timedelta(days=mon.maturity_days)) if mon.maturity_days is not None else None
    aged = f"l.first_at <= {cutoff}" if cutoff else "FALSE"
    trunc = f"date_trunc('{unit}', {{}})"
    con = hist.con
    # A lead's group is its first scoring's (none: scored before the experiment), and only for a
    # lead first scored since experiment.started_at: earlier groups are an earlier experiment's.
    grp = "arg_min_null(grp, scored_at)"
    if cfg.experiment.started_at is not None:
        started = pd.Timestamp(cfg.experiment.started_at).tz_convert("UTC")
        grp = f"CASE WHEN min(scored_at) >= {_sql_time(started)} THEN {grp} END"
    con.execute(
        "CREATE TEMP TABLE leads AS SELECT lead_id, min(scored_at) AS first_at, arg_min(score, scored_at) AS score, "
        f"arg_min(model_version, scored_at) AS version, {grp} AS grp FROM hist GROUP BY lead_id"
    )
    con.execute(
        f"CREATE TEMP TABLE ev AS SELECT {trunc.format('l.first_at')} AS cohort, l.score, l.version, l.grp, "
        "CASE WHEN o.outcome IN ('converted', 'lost') AND o.closed_at < l.first_at THEN 'before' "
        "WHEN o.outcome = 'converted' THEN 'converted' WHEN o.outcome = 'lost' THEN 'lost' "
        f"WHEN {aged} THEN 'aged' ELSE 'young' END AS state, "
        "CASE WHEN o.outcome IN ('converted', 'lost') AND o.closed_at >= l.first_at "
        "THEN epoch(o.closed_at - l.first_at) / 86400.0 END AS days "
        "FROM leads l LEFT JOIN outcomes_df o ON l.lead_id = o.lead_id"
    )
    counts = hist.frame("SELECT cohort, score, grp, state, count(*) AS n FROM ev GROUP BY ALL")
    if counts.empty:
        notes.append(f"No lead was scored before {_iso(at)}: nothing to monitor yet.")
        return _empty_report(at, unit, notes, settings)
    medians = hist.frame("SELECT cohort, median(days) AS days FROM ev WHERE days IS NOT NULL GROUP BY cohort")
    versions = hist.frame("SELECT cohort, version, count(*) AS n FROM ev GROUP BY ALL ORDER BY cohort, n DESC, version")
    changes = hist.frame("SELECT model_version AS version, min(scored_at) AS first_scored_at FROM hist GROUP BY 1 ORDER BY 2, 1")
    unknown = con.execute(
        "SELECT count(*), list(o.lead_id ORDER BY o.lead_id)[1:5] FROM outcomes_df o ANTI JOIN leads l ON o.lead_id = l.lead_id"
    ).fetchone()
    if unknown and unknown[0]:
        notes.append(
            f"{count(unknown[0])} lead(s) in the outcome history were never scored, e.g. {', '.join(unknown[1])}: left out."
        )
    for frame in (counts, medians, versions):
        frame["cohort"] = pd.to_datetime(frame["cohort"], utc=True)
    counts["n"] = counts["n"].astype(int)
    counts["score"] = counts["score"].clip(0, 100).astype(int)
    before = int(counts.loc[counts["state"] == "before", "n"].sum())
    if before:
        notes.append(
            f"{count(before)} lead(s) were converted or lost before their first scoring: left out of the evaluation "
            "(their score may have seen the outcome)."
        )

    cohorts_df = _cohort_table(cfg, counts, medians, versions, unit, notes)
    grade_names = list(grades["names"])
    grade_of = np.asarray(grade_names, dtype=object)[grade_index(np.arange(101), grades["min_scores"])]
    bucket_of, _ = assign_buckets(np.arange(101), cfg.scoring.buckets)
    grade_df = _group_table(counts, grade_of, "grade", grade_names, unit)
    bucket_df = _group_table(counts, bucket_of, "bucket", [b.name for b in cfg.scoring.buckets], unit)

    reference, reference_what = training_reference(cfg, manifest)
    drift_df = _drift(cfg, hist, reference, model, unit, notes)
    if not drift_df.empty:
        drift_df["cohort"] = [_cohort_label(c, unit) for c in drift_df.pop("start")]

    ab_df, ab_total = (None, None)
    groups = counts["grp"].dropna().unique()
    if (not hist.has_groups or not len(groups)) and cfg.experiment.enabled:
        notes.append(
            "The A/B test is configured (experiment.control_share), but no lead counted here was first scored with "
            "an experiment group (the leads scored before it started keep their first scoring): no A/B test to report "
            "until leads first scored since then have their outcomes."
        )
    elif not hist.has_groups or not len(groups):
        notes.append(
            "No control group is configured (no experiment group in the score history): "
            "no A/B test to report; set experiment.control_share to hold some leads out of the scoring."
        )
    else:
        ab_df, ab_total = _ab(counts, cohorts_df, mon.confidence, unit)
        other = sorted(set(groups) - {CONTROL, TREATMENT})
        if other:
            notes.append(f"Experiment groups other than control and treatment are left out of the A/B test: {other}.")

    changes["version"] = changes["version"].astype(str)
    ref_auc, ref_on = reference_auc(manifest)
    model_info = {
        "version": str(manifest.get("sha256", ""))[:12] or None,
        "name": manifest.get("model_name"),
        "reference_auc": ref_auc,
        "reference_on": ref_on,
        "grades": grade_names,
    }
    if model_info["reference_auc"] is None and manifest:
        notes.append("The model's manifest records no validation ROC-AUC: no ROC-AUC drop alert.")
    totals = _totals(cohorts_df, counts)
    alerts = _alerts(cfg, cohorts_df, drift_df, ab_total, model_info["reference_auc"], labels, model_info["reference_on"])
    report = MonitoringReport(
        now=at.to_pydatetime(),
        cohort=unit,  # type: ignore[arg-type]
        settings=settings,
        model=model_info,
        totals=totals,
        cohorts=cohorts_df,
        grades=grade_df,
        buckets=bucket_df,
        drift=drift_df,
        model_changes=changes.assign(first_scored_at=[_iso(t) for t in changes["first_scored_at"]]),
        ab=ab_df,
        ab_total=ab_total,
        alerts=alerts,
        notes=notes,
        reference=reference_what,
    )
    log.info("monitoring: %d cohort(s), %d alert(s), %d note(s)", len(cohorts_df), len(alerts), len(notes))
    return report


#: Where a manifest's reference ROC-AUC was measured, by the key it is under, in the order read.
_REFERENCE_ON = {
    "validation": "the model's validation leads",  # notebook 07
    "metrics": "the held-out new leads of its retraining",  # a challenger promotion
}


def reference_auc(manifest: Mapping[str, Any]) -> tuple[float | None, str]:
    """The model's reference ROC-AUC and where it was measured, in words (None when the
    manifest records none)."""
    for key, on in _REFERENCE_ON.items():
        value = (manifest.get(key) or {}).get("roc_auc")
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            return float(value), on
    return None, _REFERENCE_ON["validation"]


def _per_score(part: pd.DataFrame, state: str | Sequence[str]) -> np.ndarray:
    states = [state] if isinstance(state, str) else list(state)
    sel = part[part["state"].isin(states)]
    return np.bincount(sel["score"].to_numpy(), weights=sel["n"].to_numpy(dtype=float), minlength=101)


def _cohort_table(
    cfg: ProjectConfig,
    counts: pd.DataFrame,
    medians: pd.DataFrame,
    versions: pd.DataFrame,
    unit: str,
    notes: list[str],
) -> pd.DataFrame:
    """One row per cohort (see the module)."""
    mon = cfg.monitoring
    p = np.arange(101) / 100.0
    rows = []
    median_of = dict(zip(medians["cohort"], medians["days"], strict=True))
    one_class = []
    for start, part in counts.groupby("cohort", sort=True):
        by_state = part.groupby("state")["n"].sum()
        n = {s: int(by_state.get(s, 0)) for s in STATES}
        leads = sum(n.values())
        pos, neg = _per_score(part, "converted"), _per_score(part, ("lost", "aged"))
        counted = n["converted"] + n["lost"] + n["aged"]
        expected = float(np.sum((pos + neg) * p))
        variance = float(np.sum((pos + neg) * p * (1 - p)))
        low, high = expected_interval(expected, variance, mon.confidence)
        complete = n["young"] == 0
        label = _cohort_label(start, unit)
        if counted == 0:
            calibration = "no outcome yet"
        elif not complete:
            calibration = "maturing"
        elif counted < mon.min_leads:
            calibration = "too few leads"
        else:
            calibration = "above" if n["converted"] > high else "below" if n["converted"] < low else "within"
        enough = min(n["converted"], n["lost"] + n["aged"]) >= mon.min_per_class
        if enough:
            auc, brier, quality = auc_from_counts(pos, neg), brier_from_counts(p, pos, neg), "measured"
        else:
            auc, brier = float("nan"), float("nan")
            quality = (
                f"not enough outcomes yet ({count(n['converted'])} converted, {count(n['lost'] + n['aged'])} not; "
                f"{count(mon.min_per_class)} of each needed)"
            )
            if complete and counted >= mon.min_per_class and min(n["converted"], n["lost"] + n["aged"]) == 0:
                one_class.append(label)
        auc_low, auc_high = auc_interval(auc, n["converted"], n["lost"] + n["aged"], mon.confidence)
        used = versions[versions["cohort"] == start]
        rows.append(
            {
                "cohort": label,
                "start": start,
                "end": _cohort_end(start, unit),
                "leads": leads,
                "converted": n["converted"],
                "lost": n["lost"],
                "open_counted_as_lost": n["aged"],
                "open": n["young"],
                "closed_before_scoring": n["before"],
                "final_outcomes": n["converted"] + n["lost"],
                "final_share": (n["converted"] + n["lost"]) / leads if leads else float("nan"),
                "counted": counted,
                "conversion_rate": n["converted"] / counted if counted else float("nan"),
                "expected_all": float(np.sum(_per_score(part, STATES[:4]) * p)),
                "expected": expected,
                "expected_low": low,
                "expected_high": high,
                "observed": n["converted"],
                "complete": complete,
                "calibration": calibration,
                "roc_auc": auc,
                "roc_auc_low": auc_low,
                "roc_auc_high": auc_high,
                "brier": brier,
                "ranking": quality,
                "median_days_to_outcome": float(median_of.get(start, float("nan"))),
                "model_versions": [str(v)[:12] for v in used["version"]],
            }
        )
    if one_class:
        notes.append(
            f"Cohort(s) {', '.join(one_class)} have one class only (every counted lead converted, or none did): "
            "no ROC-AUC for them."
        )
    return pd.DataFrame(rows)


def _group_table(counts: pd.DataFrame, group_of: np.ndarray, name: str, order: Sequence[str], unit: str) -> pd.DataFrame:
    """Per cohort and grade (or bucket): leads, counted, converted and conversion rate."""
    frame = counts.assign(**{name: group_of[counts["score"].to_numpy()]})
    frame = frame.assign(
        counted=np.where(frame["state"].isin(("converted", "lost", "aged")), frame["n"], 0),
        converted=np.where(frame["state"] == "converted", frame["n"], 0),
    )
    out = frame.groupby(["cohort", name], sort=True)[["n", "counted", "converted"]].sum().reset_index()
    out[name] = pd.Categorical(out[name], categories=list(order), ordered=True)
    out = out.sort_values(["cohort", name]).rename(columns={"n": "leads"})
    out["conversion_rate"] = np.where(out["counted"] > 0, out["converted"] / out["counted"].where(out["counted"] > 0, 1), np.nan)
    out[name] = out[name].astype(str)
    out.insert(0, "cohort_label", [_cohort_label(c, unit) for c in out["cohort"]])
    return out.drop(columns="cohort").rename(columns={"cohort_label": "cohort"}).reset_index(drop=True)


def _ab(counts: pd.DataFrame, cohorts: pd.DataFrame, confidence: float, unit: str) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """Treatment against control per cohort, and over the complete cohorts."""
    counted = counts[counts["state"].isin(("converted", "lost", "aged")) & counts["grp"].isin((CONTROL, TREATMENT))]
    table = counted.assign(conv=np.where(counted["state"] == "converted", counted["n"], 0))
    agg = table.groupby(["cohort", "grp"])[["n", "conv"]].sum().unstack("grp", fill_value=0)
    complete = dict(zip(cohorts["start"], cohorts["complete"], strict=True))
    rows = []

    def measured(cn: int, cc: int, tn: int, tc: int) -> dict[str, Any]:
        row: dict[str, Any] = {"control_leads": cn, "control_conversions": cc, "treatment_leads": tn, "treatment_conversions": tc}
        if cn and tn:
            row.update(ab_lift(cc, cn, tc, tn, confidence))
            row["significant"] = bool(row["significant"])
        return row

    for start in sorted(agg.index):
        get = agg.loc[start]
        cn, tn = int(get.get(("n", CONTROL), 0)), int(get.get(("n", TREATMENT), 0))
        cc, tc = int(get.get(("conv", CONTROL), 0)), int(get.get(("conv", TREATMENT), 0))
        rows.append(
            {"cohort": _cohort_label(start, unit), "complete": bool(complete.get(start, False)), **measured(cn, cc, tn, tc)}
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame, None
    done = frame[frame["complete"]]
    sums = {c: int(done[c].sum()) for c in ("control_leads", "control_conversions", "treatment_leads", "treatment_conversions")}
    total = measured(sums["control_leads"], sums["control_conversions"], sums["treatment_leads"], sums["treatment_conversions"])
    total["cohorts"] = len(done)
    total["outcomes"] = sums["control_leads"] + sums["treatment_leads"]
    return frame, total


def _drift(
    cfg: ProjectConfig, hist: _History, reference: pd.DataFrame | None, model: Any, unit: str, notes: list[str]
) -> pd.DataFrame:
    """PSI per scoring cohort of the score and of each recorded input against the reference:
    each lead counted once per period, at its first scoring in it (a lead rescored every night,
    or after every promotion, would otherwise count once per scoring, and the cohort would
    measure the stock of long-open leads rather than the leads of the period)."""
    rows: list[dict[str, Any]] = []
    if reference is None:
        notes.append(
            f"No training reference in {cfg.path('work_dir')} (work.parquet, or history.parquet after a retraining): "
            "the drift (PSI) is left out."
        )
        return pd.DataFrame(rows)
    trunc = f"date_trunc('{unit}', scored_at)"
    hist.con.execute(
        f"CREATE OR REPLACE TEMP VIEW period_leads AS SELECT lead_id, {trunc} AS start, min(scored_at) AS scored_at, "
        "arg_min(score, scored_at) AS score, arg_min(inputs, scored_at) AS inputs "
        "FROM hist GROUP BY lead_id, start"
    )
    sizes = hist.frame("SELECT start, count(*) AS n FROM period_leads GROUP BY 1 ORDER BY 1")
    sizes["start"] = pd.to_datetime(sizes["start"], utc=True)
    starts = list(sizes["start"])
    position = {s: i for i, s in enumerate(starts)}
    leads = dict(zip(starts, sizes["n"].astype(int), strict=True))
    if model is not None:
        try:
            ref_scores = to_score(model.predict_proba(reference.drop(columns=[cfg.data.target_column], errors="ignore"))[:, 1])
        except Exception as exc:  # a reference the model cannot read: a line, not a traceback
            notes.append(f"The model could not score the training reference ({first_line(exc)}): no drift of the score.")
            ref_scores = None
        if ref_scores is not None:
            inner = numeric_edges(ref_scores)
            ref_counts = np.bincount(numeric_bins(ref_scores, inner), minlength=len(inner) + 2)
            cur = hist.frame("SELECT start, score, count(*) AS n FROM period_leads GROUP BY ALL")
            cur["start"] = pd.to_datetime(cur["start"], utc=True)
            rows += _psi_rows(SCORE, ref_counts, cur["start"], numeric_bins(cur["score"], inner), cur["n"], position, leads)
    rows += _input_drift(cfg, hist, reference, position, leads, notes)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["level"] = [drift_level(v, alert=cfg.monitoring.psi_alert) if not math.isnan(v) else "" for v in frame["psi"]]
    return frame


def _psi_rows(
    variable: str,
    ref_counts: np.ndarray,
    starts: pd.Series,
    bins: np.ndarray,
    n: pd.Series,
    position: Mapping[pd.Timestamp, int],
    leads: Mapping[pd.Timestamp, int],
) -> list[dict[str, Any]]:
    """PSI rows of one variable: per cohort, from its counts per bin, with the cohort's leads."""
    size = len(ref_counts)
    idx = np.array([position[s] for s in starts], dtype=int)
    grid = np.bincount(idx * size + bins, weights=np.asarray(n, dtype=float), minlength=len(position) * size).reshape(-1, size)
    out = []
    for start, i in position.items():
        if grid[i].sum() > 0:
            out.append({"start": start, "variable": variable, "psi": psi_from_counts(ref_counts, grid[i]), "leads": leads[start]})
    return out


def _input_values(cfg: ProjectConfig, column: str) -> tuple[str, Callable[[Any], Any]]:
    """How one input is compared: ``numeric`` (a number in the export's notation, missing codes
    as missing) or ``categorical`` (stripped text; yes/no spellings as yes / no)."""
    d = cfg.model_data
    if column in d.columns.numeric:
        schema = LeadSchema(cfg)
        codes = set(map(float, d.numeric_missing.get(column, [])))

        def as_number(v: Any) -> float:
            try:
                x = schema.number(v)
            except ValueError:
                return float("nan")
            return float("nan") if x in codes else x

        return "numeric", as_number
    if column in d.columns.yes_no:
        yes, no = {v.casefold() for v in d.yes_values}, {v.casefold() for v in d.no_values}
        missing = {v.casefold() for v in d.missing_values}

        def as_yes_no(v: Any) -> Any:
            t = text(v)
            if t is None or t.casefold() in missing:
                return None
            return "yes" if t.casefold() in yes else "no" if t.casefold() in no else t

        return "categorical", as_yes_no
    return "categorical", text


def _decode(value: Any) -> Any:
    """A JSON value as DuckDB gives it (text), decoded; missing (no key, null) as None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return None


def _input_drift(
    cfg: ProjectConfig,
    hist: _History,
    reference: pd.DataFrame,
    position: Mapping[pd.Timestamp, int],
    leads: Mapping[pd.Timestamp, int],
    notes: list[str],
) -> list[dict[str, Any]]:
    """PSI rows of each recorded input (the configured columns the reference has; behavioural
    features, computed from events, are not inputs)."""
    import duckdb

    columns = [c for c in cfg.model_data.columns.all if c not in cfg.event_columns and c in reference.columns]
    if not hist.has_inputs:
        notes.append("The score history keeps no inputs (scored before inputs were recorded): the drift of the inputs is left out.")
        return []
    recorded = hist.con.execute("SELECT count(inputs), count(*) FROM hist").fetchone() or (0, 0)
    if not recorded[0]:
        notes.append("No scoring in the score history has its inputs recorded: the drift of the inputs is left out.")
        return []
    if recorded[0] < recorded[1]:
        notes.append(
            f"{count(recorded[1] - recorded[0])} of {count(recorded[1])} scorings have no inputs recorded: "
            "the drift of the inputs is measured on the others."
        )
    if not columns:
        return []
    # Each row's JSON parsed once (all paths at a time), then one grouping set per column: the
    # count of each (cohort, value) per column; ``i`` says which column a row counts.
    paths = "[" + ", ".join(_sql_text("$." + json.dumps(c, ensure_ascii=False)) for c in columns) + "]"
    cs = ", ".join(f"c{k}" for k in range(len(columns)))
    picked = ", ".join(f"j[{k + 1}] AS c{k}" for k in range(len(columns)))
    sets = ", ".join(f"(start, c{k})" for k in range(len(columns)))
    grouped = ", ".join(f"GROUPING(c{k})" for k in range(len(columns)))
    try:
        values = hist.frame(
            f"SELECT start, list_position(g, 0) - 1 AS i, CAST([{cs}][list_position(g, 0)] AS VARCHAR) AS v, n FROM ("
            f"SELECT start, {cs}, count(*) AS n, [{grouped}] AS g FROM ("
            f"SELECT start, {picked} FROM (SELECT start, json_extract(inputs, {paths}) AS j "
            f"FROM period_leads WHERE inputs IS NOT NULL)) GROUP BY GROUPING SETS ({sets}))"
        )
    except duckdb.Error as exc:
        notes.append(f"The recorded inputs could not be read ({one_line(exc, 200)}): the drift of the inputs is left out.")
        return []
    values["start"] = pd.to_datetime(values["start"], utc=True)
    rows: list[dict[str, Any]] = []
    for i, column in enumerate(columns):
        part = values[values["i"] == i]
        kind, convert = _input_values(cfg, column)
        decoded = map_unique(part["v"], lambda v, convert=convert: convert(_decode(v)))  # each distinct value once
        ref_values = map_unique(reference[column], convert)
        if kind == "numeric":
            ref_num = pd.to_numeric(pd.Series(ref_values), errors="coerce").to_numpy(dtype=float)
            inner = numeric_edges(ref_num)
            ref_counts = np.bincount(numeric_bins(ref_num, inner), minlength=len(inner) + 2)
            bins = numeric_bins(pd.to_numeric(pd.Series(decoded), errors="coerce").to_numpy(dtype=float), inner)
        else:
            levels = list(_level_text(ref_values).unique())
            ref_counts = category_counts(ref_values, levels)
            bins = pd.Index(levels).get_indexer(_level_text(decoded))
            bins = np.where(bins < 0, len(levels), bins)
        rows += _psi_rows(column, ref_counts, part["start"], bins, part["n"], position, leads)
    return rows


def _totals(cohorts: pd.DataFrame, counts: pd.DataFrame) -> dict[str, Any]:
    complete = cohorts[cohorts["complete"]]
    return {
        "leads": int(cohorts["leads"].sum()),
        "scored_from": _iso(cohorts["start"].min()),
        "scored_to": _iso(cohorts["end"].max()),
        "cohorts": len(cohorts),
        "complete_cohorts": len(complete),
        "final_outcomes": int(cohorts["final_outcomes"].sum()),
        "converted": int(cohorts["converted"].sum()),
        "open": int(cohorts["open"].sum()),
        "complete_expected": float(complete["expected"].sum()),
        "complete_observed": int(complete["observed"].sum()),
        "experiment_leads": int(counts.loc[counts["grp"].isin((CONTROL, TREATMENT)), "n"].sum()),
    }


def _span(cohorts: Sequence[str]) -> str:
    return cohorts[0] if len(cohorts) == 1 else f"{len(cohorts)} cohorts ({cohorts[0]} … {cohorts[-1]})"


def _alerts(
    cfg: ProjectConfig,
    cohorts: pd.DataFrame,
    drift: pd.DataFrame,
    ab_total: Mapping[str, Any] | None,
    reference_auc: float | None,
    labels: Mapping[str, str],
    reference_on: str = "the model's validation leads",
) -> list[Alert]:
    """The thresholds crossed (see the module), one line each; ``reference_on``: where the
    reference ROC-AUC was measured (:func:`reference_auc`)."""
    mon = cfg.monitoring
    alerts: list[Alert] = []
    if reference_auc is not None:
        floor = reference_auc - mon.auc_drop
        # Below the floor beyond doubt: the cohort's whole interval (a small cohort's ROC-AUC is noisy).
        low = cohorts[cohorts["complete"] & (cohorts["roc_auc_high"] < floor)]
        if len(low):
            where = list(low["cohort"])
            values = (
                f"ROC-AUC {number(low['roc_auc'].iloc[0])}"
                if len(low) == 1
                else f"ROC-AUC from {number(low['roc_auc'].min())} to {number(low['roc_auc'].max())}"
            )
            alerts.append(
                Alert(
                    "auc",
                    f"Ranking quality dropped in {'cohort ' if len(where) == 1 else ''}{_span(where)}: {values} against "
                    f"{number(reference_auc)} on {reference_on} (alert when a cohort's "
                    f"{percent(mon.confidence)} interval lies below {number(floor)}).",
                    tuple(where),
                )
            )
    for r in cohorts[cohorts["calibration"].isin(("above", "below"))].itertuples():
        side = "more" if r.calibration == "above" else "fewer"
        alerts.append(
            Alert(
                "calibration",
                f"Calibration off in cohort {r.cohort}: {count(r.observed)} conversions observed, {side} than the "
                f"{number(r.expected)} expected ({percent(mon.confidence)} interval {number(r.expected_low)} to "
                f"{number(r.expected_high)}).",
                (r.cohort,),
                condition=r.calibration,
            )
        )
    if not drift.empty:
        high = drift[(drift["psi"] > mon.psi_alert) & (drift["leads"] >= mon.min_leads)]
        order = [SCORE, *(v for v in dict.fromkeys(drift["variable"]) if v != SCORE)]
        for variable in order:
            hit = high[high["variable"] == variable]
            if hit.empty:
                continue
            name = "the score" if variable == SCORE else labels.get(variable, variable)
            where = list(hit["cohort"])
            alerts.append(
                Alert(
                    "drift",
                    f"Drift of {name}: PSI above {number(mon.psi_alert)} in {_span(where)}, up to {number(hit['psi'].max())}.",
                    tuple(where),
                    variable,
                )
            )
    if ab_total and "lift" in ab_total:
        outcomes = int(ab_total["outcomes"])
        if outcomes >= mon.lift_min_outcomes and not ab_total["significant"]:
            alerts.append(
                Alert(
                    "lift",
                    f"The lift is not significant after {count(outcomes)} outcomes in the A/B test: treatment "
                    f"{percent(ab_total['treatment_rate'], 1)} against control {percent(ab_total['control_rate'], 1)}, "
                    f"difference {_points(ab_total['difference_low'])} to {_points(ab_total['difference_high'])}.",
                    condition=f"not significant{_experiment_tag(cfg)}",
                )
            )
        elif outcomes >= mon.lift_min_outcomes and ab_total["significant"] and ab_total["difference"] < 0:
            alerts.append(
                Alert(
                    "lift",
                    f"The treatment group converts less than the control group: {percent(ab_total['treatment_rate'], 1)} "
                    f"against {percent(ab_total['control_rate'], 1)}.",
                    condition=f"negative{_experiment_tag(cfg)}",
                )
            )
    return alerts


def _experiment_tag(cfg: ProjectConfig) -> str:
    """Which experiment a lift alert is about (its start and a digest of its salt): a new
    experiment's alert is a new alert."""
    import hashlib

    exp = cfg.experiment
    salt = hashlib.sha256(exp.salt.encode()).hexdigest()[:8]
    return f", experiment {exp.started_at.isoformat() if exp.started_at else 'from the start'} {salt}"


def _points(share: float) -> str:
    """A difference of shares in percentage points: ``+1.2 points``."""
    return ("+" if share > 0 else "") + number(100 * share) + " points"


# -- the A/B test, as notebook 09 reads it ------------------------------------------------------


def lift_sentence(total: Mapping[str, Any] | None, confidence: float, min_outcomes: int = 0) -> str:
    """The A/B test's result in one sentence (plain text): both conversion rates, the lift with
    its interval, the difference in points and whether it is significant; no verdict before
    ``min_outcomes`` outcomes (``monitoring.lift_min_outcomes``)."""
    if not total or total.get("lift") is None or (isinstance(total["lift"], float) and math.isnan(total["lift"])):
        return "No complete cohort with conversions in both groups yet: the A/B totals wait for the outcomes to mature."
    outcomes = int(total.get("outcomes", 0))
    if outcomes < min_outcomes:
        verdict = f"too early to judge ({count(outcomes)} of the {count(min_outcomes)} outcomes the test waits for)"
    else:
        verdict = "significant" if total["significant"] else "not significant"
    return (
        f"Over the {count(total['cohorts'])} complete cohort(s): treatment {percent(total['treatment_rate'], 1)} "
        f"({count(total['treatment_leads'])} leads) against control {percent(total['control_rate'], 1)} "
        f"({count(total['control_leads'])} leads), a lift of {percent(total['lift'])} ({percent(confidence)} interval "
        f"{percent(total['lift_low'])} to {percent(total['lift_high'])}); difference {_points(total['difference'])} "
        f"({_points(total['difference_low'])} to {_points(total['difference_high'])}): {verdict}."
    )


def ab_table(ab: pd.DataFrame, period: str) -> pd.DataFrame:
    """The A/B test per cohort as people read it (the columns :func:`show` formats)."""

    def column(name: str) -> pd.Series:
        return ab[name] if name in ab else pd.Series(np.nan, index=ab.index)

    return pd.DataFrame(
        {
            period: ab["cohort"],
            "control leads": ab["control_leads"],
            "control conversion": column("control_rate"),
            "treatment leads": ab["treatment_leads"],
            "treatment conversion": column("treatment_rate"),
            "lift": column("lift"),
            "lift from": column("lift_low"),
            "lift to": column("lift_high"),
            "complete": ["yes" if v else "no, maturing" for v in ab["complete"]],
        }
    )


#: How :func:`show` formats :func:`ab_table`.
AB_PERCENT = ["control conversion", "treatment conversion", "lift", "lift from", "lift to"]
AB_COUNTS = ["control leads", "treatment leads"]


def ab_test_summary(cfg: ProjectConfig) -> tuple[str, pd.DataFrame | None]:
    """What the last monitoring report (``monitoring.json`` in the project's results folder,
    also during a staged run) says of the A/B test: a sentence, and the table per cohort
    (:func:`ab_table`; None without an A/B test)."""
    path = cfg.root_path(cfg.paths.results_dir) / MONITORING_DATA
    if not path.is_file():
        return (
            f"No monitoring report yet ({path.name}): `leadscoring monitor`, or the nightly `leadscoring cycle`, writes it "
            "once leads are scored in production.",
            None,
        )
    try:
        data = read_json_object(path, "monitoring report", "`leadscoring monitor` writes it again")
        when = str(data.get("generated_at", ""))[:10]
        ab = data.get("ab_test")
        if ab and not isinstance(ab, dict):
            raise LeadDataError(f"{path}: not a readable monitoring report (ab_test is not an object)")
    except LeadDataError as exc:  # a report of the report: say it, never fail the notebook reading it
        return f"The monitoring report could not be read: {exc}", None
    if not ab:
        return (
            f"The monitoring report of {when} has no A/B test: no control group is configured, so every lead is scored "
            "and worked by its score. Set `experiment.control_share` to hold a share of the leads out.",
            None,
        )
    settings = data.get("settings") or {}
    confidence = float(settings.get("confidence", 0.95))
    period = "week starting" if data.get("cohort") == "week" else "month"
    table = ab_table(pd.DataFrame(ab.get("cohorts") or []), period) if ab.get("cohorts") else None
    sentence = lift_sentence(ab.get("total"), confidence, int(settings.get("lift_min_outcomes", 0)))
    return f"Monitoring report of {when}. " + sentence, table


def write_monitoring(
    cfg: ProjectConfig,
    *,
    cohort: Literal["week", "month"] | None = None,
    now: datetime | str | None = None,
    report: MonitoringReport | None = None,
    as_of: str | None = None,
) -> tuple[Path, Path]:
    """Write the monitoring report of ``cfg``'s project (``report``, else
    :func:`build_monitoring` with ``cohort`` and ``now``) as ``monitoring.html`` and
    ``monitoring.json`` in ``paths.results_dir``, each atomically; their paths. ``as_of``
    (a report as of another time, e.g. ``20270301T000000Z``) names files of its own
    (``monitoring_as_of_{as_of}.html``), so the current report stays where the run's index
    links to it."""
    from leadscoring.loop.monitoring_page import monitoring_html  # the page reads this module's report

    report = report if report is not None else build_monitoring(cfg, cohort=cohort, now=now)
    results = cfg.path("results_dir")
    names = [Path(MONITORING_REPORT), Path(MONITORING_DATA)]
    if as_of is not None:
        names = [n.with_stem(f"{n.stem}_as_of_{as_of}") for n in names]
    page = write_text(monitoring_html(report, cfg), results / names[0])
    data = write_json(report.to_json(), results / names[1])
    log.info("monitoring report written to %s and %s", page, data)
    return page, data
