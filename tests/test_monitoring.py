"""The monitoring report (leadscoring.loop.monitoring): a generated history of 26 weekly
cohorts whose every figure is checked against a hand computation (a drift planted from week
20, a calibration shift planted in weeks 6 and 7, a control group with a known lift, a last
cohort with too few outcomes), the page in a real browser, bad input as lines of the report,
and the ``monitor`` command."""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from leadscoring.artifacts import SCORE_MODEL, load_model, save_model
from leadscoring.cli import main
from leadscoring.config import ProjectConfig, load_config
from leadscoring.crm.outcomes import OutcomeRow, append_outcome_rows, status_text
from leadscoring.io import write_parquet
from leadscoring.loop.monitoring import MonitoringReport, ab_test_summary, build_monitoring, lift_sentence, write_monitoring
from leadscoring.serving.history import append_scores, history_folder
from leadscoring.serving.scorer import to_score

from .browser import page_problems, requires_chromium, screenshot, visible_text

START = pd.Timestamp("2025-01-06", tz="UTC")  # a Monday
WEEKS, PER_WEEK, LAST_WEEK = 26, 1200, 120  # the last week is a short one: too few outcomes
NOW = START + pd.Timedelta(weeks=WEEKS)
DRIFT_FROM = 20  # the first drifted week (1-based)
SHIFTED = (6, 7)  # weeks converting 1.7 times what the scores say
SHIFT = 1.7
CONTROL_FACTOR, TREATMENT_FACTOR = 0.85, 1.15  # the control group converts less, the treatment more
MATURITY, MIN_PER_CLASS, MIN_LEADS = 42, 30, 100
REFERENCE_AUC = 0.99  # the manifest's validation ROC-AUC: a cohort below 0.94 raises an alert
Z = 1.959963984540054
OLD, NEW = "a" * 12, "b" * 12  # model versions: the second scores from week 13


def _config(tmp: Path, make_project, **monitoring: object) -> ProjectConfig:
    settings = {"maturity_days": MATURITY, "min_per_class": MIN_PER_CLASS, "min_leads": MIN_LEADS, **monitoring}
    return load_config(make_project(monitoring=settings))


def _install_model(cfg: ProjectConfig, small_models: Path, sample: pd.DataFrame) -> object:
    """The small model as the project's scoring model (with a validation ROC-AUC in its
    manifest), and the sample as its working split."""
    model, manifest = load_model(small_models / SCORE_MODEL)
    save_model(
        model,
        cfg.path("models_dir") / SCORE_MODEL,
        kind="lead_scoring_model",
        grades=manifest["grades"],
        validation={"roc_auc": REFERENCE_AUC},
    )
    write_parquet(sample, cfg.path("work_dir") / "work.parquet")
    return model


def _inputs_json(rows: pd.DataFrame, columns: list[str]) -> list[str]:
    def value(v: object) -> object:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        return v

    records = rows[columns].astype(object).to_dict(orient="records")
    return [json.dumps({k: value(v) for k, v in r.items()}, sort_keys=True) for r in records]


def _write_part(folder: Path, table: pa.Table) -> None:
    """One scoring job's part, as the score history names them (with the experiment group and
    the inputs the score history keeps)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"part-{pd.Timestamp.now().value:020d}-{uuid.uuid4().hex[:16]}-{uuid.uuid4().hex[:8]}.parquet"
    pq.write_table(table, folder / name)


@dataclass
class Generated:
    """The generated history, lead by lead: what the hand computations read."""

    week: np.ndarray
    score: np.ndarray
    group: np.ndarray
    version: np.ndarray
    scored_at: pd.DatetimeIndex
    state: np.ndarray  # converted, lost, aged, young (as of NOW)
    closed_at: pd.DatetimeIndex
    q: np.ndarray  # each lead's true conversion probability
    drifted: np.ndarray  # the drifted input, lead by lead
    column: str  # its name


def generate(
    cfg: ProjectConfig,
    model: object,
    sample: pd.DataFrame,
    seed: int = 7,
    factors: tuple[float, float] = (CONTROL_FACTOR, TREATMENT_FACTOR),
) -> Generated:
    """26 weekly cohorts (see the constants); ``factors``: how much the control and the
    treatment group convert of what the scores say."""
    rng = np.random.default_rng(seed)
    d = cfg.data
    sizes = [PER_WEEK] * (WEEKS - 1) + [LAST_WEEK]
    week = np.repeat(np.arange(1, WEEKS + 1), sizes)
    n = len(week)
    rows = sample.iloc[rng.integers(0, len(sample), n)].reset_index(drop=True)
    column = d.columns.numeric[0]
    drifted = week >= DRIFT_FROM
    rows.loc[drifted, column] = rows.loc[drifted, column] * 4 + 5
    score = to_score(model.predict_proba(rows.drop(columns=[d.target_column]))[:, 1])
    scored_at = pd.DatetimeIndex(
        START + pd.to_timedelta(week - 1, unit="W") + pd.to_timedelta(rng.integers(0, 7 * 86400, n), unit="s")
    )
    group = np.where(rng.random(n) < 0.5, "control", "treatment")
    factor = np.where(group == "control", *factors) * np.where(np.isin(week, SHIFTED), SHIFT, 1.0)
    q = np.clip(score / 100 * factor, 0, 1)
    converts = rng.random(n) < q
    closes = converts | (rng.random(n) < 0.7)  # 30 % of the others are never closed in the CRM
    closed_at = scored_at + pd.to_timedelta(np.ceil(rng.exponential(15 * 86400, n)), unit="s")
    seen = closes & (closed_at <= NOW)
    aged = scored_at <= NOW - pd.Timedelta(days=MATURITY)
    state = np.select([seen & converts, seen & ~converts, aged], ["converted", "lost", "aged"], "young").astype(object)
    version = np.where(week <= 12, OLD, NEW)

    inputs = [c for c in cfg.model_data.columns.all if c not in cfg.event_columns]
    folder = history_folder(cfg.path("score_history"))
    for w in range(1, WEEKS + 1):
        m = week == w
        _write_part(
            folder,
            pa.table(
                {
                    "lead_id": pa.array([f"L{i}" for i in np.flatnonzero(m)], pa.string()),
                    "score": pa.array(score[m].astype("int16")),
                    "model_version": pa.array(version[m], pa.string()),
                    "scored_at": pa.array(scored_at[m]).cast(pa.timestamp("us", tz="UTC")),
                    "job_id": pa.array([f"job{w}"] * int(m.sum()), pa.string()),
                    "experiment_group": pa.array(group[m], pa.string()),
                    "inputs": pa.array(_inputs_json(rows[m], inputs), pa.string()),
                }
            ),
        )
    outcome_rows = []
    first_open = rng.random(n) < 0.3  # some leads have an "open" row from the day they were scored
    for i in np.flatnonzero(first_open):
        outcome_rows.append(OutcomeRow(f"L{i}", "open", scored_at[i].to_pydatetime(), None, False, status_text({"s": "new"})))
    for i in np.flatnonzero(closes):  # closures after NOW too: the report must not see them
        outcome = "converted" if converts[i] else "lost"
        when = closed_at[i].to_pydatetime()
        outcome_rows.append(OutcomeRow(f"L{i}", outcome, when, when, False, status_text({"s": outcome})))
    append_outcome_rows(cfg.path("outcome_history"), outcome_rows)
    return Generated(week, score, group, version, scored_at, state, closed_at, q, rows[column].to_numpy(dtype=float), column)


def hand_psi(reference: np.ndarray, current: np.ndarray) -> float:
    """PSI by hand: deciles of the reference (missing values a bin of their own), neighbouring
    bins joined until each expects 20 current leads (the last short group joins the one before),
    shares floored at 1e-4."""
    reference, current = np.asarray(reference, float), np.asarray(current, float)
    edges = np.unique(np.quantile(reference[~np.isnan(reference)], np.linspace(0, 1, 11)))[1:-1]

    def counts(x: np.ndarray) -> np.ndarray:
        where = np.where(np.isnan(x), len(edges) + 1, np.searchsorted(edges, x, side="right"))
        return np.bincount(where, minlength=len(edges) + 2).astype(float)

    ce, ca = counts(reference), counts(current)
    groups: list[list[int]] = [[]]
    for i in range(len(ce)):
        groups[-1].append(i)
        if ce[groups[-1]].sum() / len(reference) * len(current) >= 20:
            groups.append([])
    if len(groups) > 1 and (not groups[-1] or ce[groups[-1]].sum() / len(reference) * len(current) < 20):
        short = groups.pop()
        groups[-1] += short
    e = np.maximum(np.array([ce[g].sum() for g in groups]) / len(reference), 1e-4)
    a = np.maximum(np.array([ca[g].sum() for g in groups]) / len(current), 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


@pytest.fixture(scope="module")
def generated(tmp_path_factory, small_models, sample):
    from tests.conftest import write_project

    root = tmp_path_factory.mktemp("monitoring")
    cfg = _config(root, lambda **kw: write_project(root, **kw))
    model = _install_model(cfg, small_models, sample)
    gen = generate(cfg, model, sample)
    append_outcome_rows(
        cfg.path("outcome_history"),
        [OutcomeRow("never-scored", "converted", START.to_pydatetime(), None, False, status_text({"s": "won"}))],
    )
    return cfg, gen, model


@pytest.fixture(scope="module")
def report(generated):
    cfg, _, _ = generated
    return build_monitoring(cfg, now=NOW.to_pydatetime())


def _cohort(week: int) -> str:
    return (START + pd.Timedelta(weeks=week - 1)).strftime("%Y-%m-%d")


def test_every_cohort_figure_matches_a_hand_computation(generated, report):
    cfg, g, _ = generated
    table = report.cohorts.set_index("cohort")
    assert list(table.index) == [_cohort(w) for w in range(1, WEEKS + 1)]
    for w in range(1, WEEKS + 1):
        m = g.week == w
        row = table.loc[_cohort(w)]
        state = g.state[m]
        conv, lost, aged, young = (int((state == s).sum()) for s in ("converted", "lost", "aged", "young"))
        counted = conv + lost + aged
        assert (row["leads"], row["converted"], row["lost"], row["open_counted_as_lost"], row["open"]) == (
            m.sum(),
            conv,
            lost,
            aged,
            young,
        )
        assert row["final_share"] == pytest.approx((conv + lost) / m.sum())
        assert row["conversion_rate"] == pytest.approx(conv / counted)
        assert bool(row["complete"]) is (young == 0)
        c = m & (g.state != "young")
        p = g.score[c] / 100
        y = g.state[c] == "converted"
        expected, half = p.sum(), Z * math.sqrt(np.sum(p * (1 - p)))
        assert row["expected"] == pytest.approx(expected)
        assert row["expected_all"] == pytest.approx(g.score[m].sum() / 100)
        assert (row["expected_low"], row["expected_high"]) == pytest.approx((expected - half, expected + half))
        if young:
            assert row["calibration"] == "maturing"
        else:
            assert row["calibration"] == ("above" if conv > expected + half else "below" if conv < expected - half else "within")
        if min(y.sum(), (~y).sum()) >= MIN_PER_CLASS:
            assert row["roc_auc"] == pytest.approx(roc_auc_score(y, g.score[c]))
            assert row["brier"] == pytest.approx(np.mean((p - y) ** 2))
        else:
            assert math.isnan(row["roc_auc"]) and row["ranking"].startswith("not enough outcomes yet")
        closed = m & np.isin(g.state, ("converted", "lost"))
        days = (g.closed_at[closed] - g.scored_at[closed]).total_seconds() / 86400
        assert row["median_days_to_outcome"] == pytest.approx(np.median(days))
        assert row["model_versions"] == [OLD if w <= 12 else NEW]
    assert report.totals["leads"] == len(g.week) and report.totals["cohorts"] == WEEKS


def test_cohorts_with_too_few_outcomes_are_reported_as_such(report):
    last = report.cohorts.iloc[-1]
    assert last["cohort"] == _cohort(WEEKS) and not last["complete"] and last["calibration"] == "maturing"
    assert last["ranking"].startswith("not enough outcomes yet") and f"{MIN_PER_CLASS} of each needed" in last["ranking"]
    assert math.isnan(last["roc_auc"])


def test_conversion_per_grade_and_bucket_match_by_hand(generated, report):
    cfg, g, _ = generated
    mins = cfg.scoring.grades.min_scores
    grade = np.asarray(cfg.scoring.grades.names, dtype=object)[(g.score[:, None] < np.asarray(mins)[None, :]).sum(axis=1)]
    table = report.grades.set_index(["cohort", "grade"])
    for w in (1, 6, 20, 25):
        for name in cfg.scoring.grades.names:
            m = (g.week == w) & (grade == name)
            if not m.any():
                continue
            counted = m & (g.state != "young")
            row = table.loc[(_cohort(w), name)]
            assert (row["leads"], row["counted"]) == (m.sum(), counted.sum())
            assert row["conversion_rate"] == pytest.approx((g.state[counted] == "converted").mean())
    hot = cfg.scoring.buckets[0]
    m = (g.week == 3) & (g.score >= hot.min_score) & (g.state != "young")
    row = report.buckets.set_index(["cohort", "bucket"]).loc[(_cohort(3), hot.name)]
    assert row["converted"] == (g.state[m] == "converted").sum()


def test_planted_calibration_shift_raises_the_calibration_alert(report):
    alerts = [a for a in report.alerts if a.kind == "calibration"]
    flagged = {c for a in alerts for c in a.cohorts}
    by_hand = set(report.cohorts.loc[report.cohorts["calibration"].isin(("above", "below")), "cohort"])
    assert flagged == by_hand
    for w in SHIFTED:
        assert _cohort(w) in flagged
        assert report.cohorts.set_index("cohort").loc[_cohort(w), "calibration"] == "above"
    assert all("more than the" in a.message for a in alerts if a.cohorts[0] in {_cohort(w) for w in SHIFTED})


def test_planted_drift_raises_the_psi_alert_from_week_20(generated, report, sample):
    cfg, g, model = generated
    drift = report.drift.set_index(["variable", "cohort"])
    reference = sample[g.column].to_numpy(dtype=float)
    ref_scores = to_score(model.predict_proba(sample.drop(columns=[cfg.data.target_column]))[:, 1])
    for w in range(1, WEEKS + 1):
        m = g.week == w
        assert drift.loc[(g.column, _cohort(w)), "psi"] == pytest.approx(hand_psi(reference, g.drifted[m]))
        assert drift.loc[("score", _cohort(w)), "psi"] == pytest.approx(hand_psi(ref_scores, g.score[m]))
        assert drift.loc[(g.column, _cohort(w)), "leads"] == m.sum()
    alert = next(a for a in report.alerts if a.kind == "drift" and a.variable == g.column)
    by_hand = [_cohort(w) for w in range(1, WEEKS + 1) if hand_psi(reference, g.drifted[g.week == w]) > 0.25]
    assert list(alert.cohorts) == by_hand
    assert by_hand[0] == _cohort(DRIFT_FROM) and len(by_hand) == WEEKS - DRIFT_FROM + 1
    label = cfg.model_data.labels.get(g.column, g.column)
    assert alert.message.startswith(f"Drift of {label}: PSI above 0.25 in {WEEKS - DRIFT_FROM + 1} cohorts")
    undrifted = report.drift[(report.drift["variable"] != "score") & (report.drift["variable"] != g.column)]
    assert undrifted["psi"].max() < 0.25  # the other inputs did not move


def test_the_control_group_finds_the_known_lift_within_its_interval(generated, report):
    _, g, _ = generated
    total = report.ab_total
    complete = set(report.cohorts.loc[report.cohorts["complete"], "cohort"])
    in_complete = np.isin(np.array([_cohort(w) for w in g.week]), list(complete))
    counts = {}
    for grp in ("control", "treatment"):
        m = in_complete & (g.group == grp)
        counts[grp] = (int(m.sum()), int((g.state[m] == "converted").sum()))
    (cn, cc), (tn, tc) = counts["control"], counts["treatment"]
    assert (total["control_leads"], total["control_conversions"], total["treatment_leads"], total["treatment_conversions"]) == (
        cn,
        cc,
        tn,
        tc,
    )
    pc, pt = cc / cn, tc / tn
    se_log = math.sqrt(1 / tc - 1 / tn + 1 / cc - 1 / cn)
    assert total["lift"] == pytest.approx(pt / pc - 1)
    assert (total["lift_low"], total["lift_high"]) == pytest.approx(
        ((pt / pc) * math.exp(-Z * se_log) - 1, (pt / pc) * math.exp(Z * se_log) - 1)
    )

    def wilson(p: float, n: int) -> tuple[float, float]:
        centre, half = p + Z * Z / (2 * n), Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
        return (centre - half) / (1 + Z * Z / n), (centre + half) / (1 + Z * Z / n)

    (lc, uc), (lt, ut) = wilson(pc, cn), wilson(pt, tn)  # Newcombe's hybrid score interval of the difference
    newcombe = (pt - pc - math.hypot(pt - lt, uc - pc), pt - pc + math.hypot(ut - pt, pc - lc))
    assert (total["difference_low"], total["difference_high"]) == pytest.approx(newcombe)
    true_lift = g.q[in_complete & (g.group == "treatment")].mean() / g.q[in_complete & (g.group == "control")].mean() - 1
    assert total["lift_low"] <= true_lift <= total["lift_high"]
    assert total["significant"] and not any(a.kind == "lift" for a in report.alerts)
    assert len(report.ab) == WEEKS and report.ab["complete"].sum() == len(complete)


@pytest.mark.parametrize(
    ("factors", "condition", "opening"),
    [
        ((1.0, 1.0), "not significant", "The lift is not significant after "),
        ((1.2, 0.8), "negative", "The treatment group converts less than the control group: "),
    ],
)
def test_a_lift_not_significant_or_negative_raises_the_lift_alert(tmp_path, small_models, sample, factors, condition, opening):
    from tests.conftest import write_project

    cfg = _config(tmp_path, lambda **kw: write_project(tmp_path, **kw), lift_min_outcomes=2000)
    g = generate(cfg, _install_model(cfg, small_models, sample), sample, seed=11, factors=factors)
    report = build_monitoring(cfg, now=NOW.to_pydatetime())
    total = report.ab_total
    assert total["significant"] is (condition == "negative") and total["outcomes"] >= 2000
    (lift,) = [a for a in report.alerts if a.kind == "lift"]
    assert lift.condition.startswith(f"{condition}, experiment ") and lift.message.startswith(opening)
    if condition == "not significant":
        assert f"after {total['outcomes']:,} outcomes" in lift.message
        patient = cfg.model_copy(update={"monitoring": cfg.monitoring.model_copy(update={"lift_min_outcomes": len(g.week)})})
        assert not [a for a in build_monitoring(patient, now=NOW.to_pydatetime()).alerts if a.kind == "lift"]


def test_auc_drop_alerts_and_model_changes(generated, report):
    auc = [a for a in report.alerts if a.kind == "auc"]
    c = report.cohorts
    by_hand = list(c.loc[c["complete"] & (c["roc_auc_high"] < REFERENCE_AUC - 0.05), "cohort"])
    assert len(auc) == 1 and list(auc[0].cohorts) == by_hand and by_hand
    # Hanley and McNeil's interval from the cohort's counts, by hand
    first = c.loc[c["cohort"] == by_hand[0]].iloc[0]
    a, n1, n2 = first["roc_auc"], first["converted"], first["lost"] + first["open_counted_as_lost"]
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se = math.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n2 - 1) * (q2 - a * a)) / (n1 * n2))
    assert (first["roc_auc_low"], first["roc_auc_high"]) == pytest.approx((a - Z * se, min(a + Z * se, 1.0)))
    # a cohort below the floor whose interval still reaches above it (few outcomes) raises no alert
    from leadscoring.loop.monitoring import _alerts

    cfg = generated[0]
    noisy = c.assign(roc_auc_high=np.where(c["cohort"].isin(by_hand), REFERENCE_AUC, c["roc_auc_high"]))
    assert not [a for a in _alerts(cfg, noisy, report.drift, None, REFERENCE_AUC, {}) if a.kind == "auc"]
    assert auc[0].message.startswith(
        f"Ranking quality dropped in {len(by_hand)} cohorts ({by_hand[0]} … {by_hand[-1]}): ROC-AUC from"
    )
    changes = report.model_changes
    assert list(changes["version"]) == [OLD, NEW]
    assert pd.Timestamp(changes["first_scored_at"].iloc[1]) >= START + pd.Timedelta(weeks=12)


def test_outcomes_for_unknown_leads_and_later_changes_are_lines_not_errors(report):
    assert any("1 lead(s) in the outcome history were never scored, e.g. never-scored" in n for n in report.notes)
    assert not any("control group" in n for n in report.notes)


def test_the_json_holds_the_same_figures_and_the_month_cohorts(generated, report):
    cfg, g, _ = generated
    html_path, json_path = write_monitoring(cfg, now=NOW.to_pydatetime())
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert html_path.name == "monitoring.html" and json_path.name == "monitoring.json"
    assert data["cohorts"][5]["observed"] == int(report.cohorts.iloc[5]["observed"])
    assert data["ab_test"]["total"]["lift"] == pytest.approx(report.ab_total["lift"])
    assert [a["kind"] for a in data["alerts"]] == [a.kind for a in report.alerts]
    assert data["cohorts"][-1]["roc_auc"] is None  # NaN is null in JSON
    first = report.cohorts.iloc[0]["median_days_to_outcome"]  # the page writes days with one decimal
    assert f">{first:.1f}</td>" in html_path.read_text(encoding="utf-8")
    from leadscoring.loop.monitoring_page import _days

    assert (_days(0.00365), _days(float("nan")), _days(12.0)) == ("under 0.1", "—", "12.0")  # not "0.00365"
    monthly = build_monitoring(cfg, cohort="month", now=NOW.to_pydatetime())
    months = pd.DatetimeIndex(g.scored_at).strftime("%Y-%m")
    assert list(monthly.cohorts["cohort"]) == sorted(set(months))
    assert list(monthly.cohorts["leads"]) == [int((months == m).sum()) for m in sorted(set(months))]


def test_notebook_09_reads_the_real_lift_from_the_monitoring_report(generated, make_project, tmp_path):
    cfg, _, _ = generated
    text, table = ab_test_summary(load_config(make_project()))
    assert text.startswith("No monitoring report yet") and table is None
    write_monitoring(cfg, now=NOW.to_pydatetime())
    text, table = ab_test_summary(cfg)
    total = build_monitoring(cfg, now=NOW.to_pydatetime()).ab_total
    assert (
        text.startswith(f"Monitoring report of {NOW:%Y-%m-%d}. Over the ")
        and "a lift of " in text
        and text.endswith(": significant.")
    )
    assert f"a lift of {round(100 * total['lift'])} %" in text
    assert len(table) == WEEKS and list(table.columns[:2]) == ["week starting", "control leads"]


@requires_chromium
def test_the_page_reads_well_in_a_browser(generated):
    cfg, g, _ = generated
    html_path, _ = write_monitoring(cfg, now=NOW.to_pydatetime())
    assert page_problems(html_path, cfg.model_data.labels) == []
    text = visible_text(html_path)
    assert "Alerts" in text and "Calibration off in cohort" in text and "A/B test" in text
    label = cfg.model_data.labels.get(g.column, g.column)
    assert label in text
    shot = screenshot(html_path, html_path.with_name("monitoring.png"))
    assert shot.parent == html_path.parent and shot.stat().st_size > 10_000


# -- bad input ----------------------------------------------------------------------------------


def test_an_empty_history_is_a_line_in_the_report(make_project, tmp_path):
    cfg = _config(tmp_path, make_project)
    html_path, json_path = write_monitoring(cfg, now=NOW.to_pydatetime())
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert any("is empty: no lead has been scored yet" in n for n in data["notes"])
    assert "no lead has been scored yet" in html_path.read_text(encoding="utf-8")


def test_leads_first_scored_before_the_experiment_stay_out_of_the_ab_test(make_project, tmp_path):
    """A lead scored (and its score pushed) before the experiment began is no control lead,
    whatever group a later rescoring gives it: only a lead's first scoring decides its group."""
    cfg = _config(tmp_path, make_project, min_per_class=5, min_leads=5)
    history = cfg.path("score_history")
    ids = [f"x{i}" for i in range(40)]
    append_scores(history, ids, [30] * 40, "v1", START.to_pydatetime())  # before the experiment: no group
    groups = pd.DataFrame({"experiment_group": ["control", "treatment"] * 20})
    append_scores(history, ids, [30] * 40, "v1", (START + pd.Timedelta(days=1)).to_pydatetime(), extra=groups)
    append_scores(history, ["y0", "y1"], [30, 30], "v1", (START + pd.Timedelta(days=1)).to_pydatetime(), extra=groups.head(2))
    closed = (START + pd.Timedelta(days=3)).to_pydatetime()
    outcome = {f"x{i}": "converted" if i % 4 == 0 else "lost" for i in range(40)} | {"y0": "lost", "y1": "converted"}
    append_outcome_rows(
        cfg.path("outcome_history"), [OutcomeRow(i, o, closed, None, False, status_text({"s": o})) for i, o in outcome.items()]
    )
    report = build_monitoring(cfg, now=NOW.to_pydatetime())
    row = report.ab.iloc[0]
    assert len(report.ab) == 1 and (row["control_leads"], row["treatment_leads"]) == (1, 1)  # y0 and y1 only
    # An earlier experiment's groups (leads first scored, with a group, before experiment.started_at) are left out too.
    earlier = ["z0", "z1", "z2", "z3"]
    append_scores(history, earlier, [30] * 4, "v1", START.to_pydatetime(), extra=groups.head(4))
    append_outcome_rows(
        cfg.path("outcome_history"), [OutcomeRow(i, "lost", closed, None, False, status_text({"s": "lost"})) for i in earlier]
    )
    assert report_leads(build_monitoring(cfg, now=NOW.to_pydatetime())) == (3, 3)  # the earlier experiment counted ...
    started = START + pd.Timedelta(hours=12)
    new = cfg.model_copy(update={"experiment": cfg.experiment.model_copy(update={"started_at": started.to_pydatetime()})})
    assert report_leads(build_monitoring(new, now=NOW.to_pydatetime())) == (1, 1)  # ... unless it ended before this one


def report_leads(report: MonitoringReport) -> tuple[int, int]:
    """Control and treatment leads of a report's A/B test, over its cohorts."""
    return int(report.ab["control_leads"].sum()), int(report.ab["treatment_leads"].sum())


def test_drift_counts_each_lead_once_per_cohort(make_project, tmp_path, small_models, sample):
    """Open leads rescored every night count once in their week's drift, at their first scoring."""
    cfg = _config(tmp_path, make_project, min_per_class=5, min_leads=5)
    _install_model(cfg, small_models, sample)
    ids = [f"x{i}" for i in range(40)]
    for day in range(4):  # scored, then rescored three nights running (the cycle)
        append_scores(cfg.path("score_history"), ids, [30 + day] * 40, "v1", (START + pd.Timedelta(days=day)).to_pydatetime())
    drift = build_monitoring(cfg, now=NOW.to_pydatetime()).drift
    score = drift[drift["variable"] == "score"]
    assert score["leads"].tolist() == [40]


def test_no_verdict_on_the_lift_before_the_test_has_its_outcomes(make_project, tmp_path):
    from leadscoring.loop.monitoring import _alerts

    total = {"lift": 0.5, "lift_low": 0.1, "lift_high": 1.0, "significant": True, "outcomes": 300, "cohorts": 2}
    total |= {"treatment_rate": 0.15, "control_rate": 0.1, "treatment_leads": 150, "control_leads": 150}
    total |= {"difference": 0.05, "difference_low": 0.01, "difference_high": 0.09}
    early = lift_sentence(total, 0.95, 1000)
    assert early.endswith("too early to judge (300 of the 1,000 outcomes the test waits for).") and "significant" not in early
    assert lift_sentence(total, 0.95, 300).endswith(": significant.")
    # nor an alert that the treatment converts less, while the headline says it is too early
    negative = total | {"lift": -0.3, "difference": -0.05, "difference_low": -0.09, "difference_high": -0.01}
    no_cohorts = pd.DataFrame({"complete": [], "roc_auc_high": [], "calibration": []})

    def lift_alerts(min_outcomes: int) -> list[str]:
        cfg = _config(tmp_path / str(min_outcomes), make_project, lift_min_outcomes=min_outcomes)
        return [a.condition for a in _alerts(cfg, no_cohorts, pd.DataFrame(), negative, None, {}) if a.kind == "lift"]

    assert lift_alerts(1000) == [] and lift_alerts(300)[0].startswith("negative")


def test_bad_inputs_are_lines_in_the_report(make_project, tmp_path, small_models, sample):
    cfg = _config(tmp_path, make_project, min_per_class=5, min_leads=5)
    history = cfg.path("score_history")
    ids = [f"x{i}" for i in range(40)]
    append_scores(history, ids, [30] * 40, "v1", START.to_pydatetime())  # no experiment group, no inputs
    append_outcome_rows(
        cfg.path("outcome_history"),
        [
            OutcomeRow(i, "lost", (START + pd.Timedelta(days=3)).to_pydatetime(), None, False, status_text({"s": "lost"}))
            for i in ids
        ]
        + [OutcomeRow("ghost", "lost", START.to_pydatetime(), None, False, status_text({"s": "lost"}))],
    )
    report = build_monitoring(cfg, now=NOW.to_pydatetime())
    notes = "\n".join(report.notes)
    assert "one class only" in notes and _cohort(1) in notes  # every counted lead lost
    assert "never scored, e.g. ghost" in notes
    assert "No control group is configured" in notes and report.ab is None
    write_monitoring(cfg, report=report)
    assert "no A/B test: no control group is configured" in ab_test_summary(cfg)[0]
    assert "No scoring model" in notes and "No training reference" in notes
    assert report.cohorts.iloc[0]["ranking"].startswith("not enough outcomes yet")

    _install_model(cfg, small_models, sample)
    report = build_monitoring(cfg, now=NOW.to_pydatetime())
    no_inputs = ("keeps no inputs", "No scoring in the score history has its inputs recorded")  # no column, or all null
    assert any(w in n for n in report.notes for w in no_inputs) and set(report.drift["variable"]) == {"score"}

    cfg.path("outcome_history").write_text("lead_id,outcome\nx1,won\n", encoding="utf-8")
    report = build_monitoring(cfg, now=NOW.to_pydatetime())
    assert any(n.startswith("The outcome history could not be read, so nothing is measured") for n in report.notes)
    assert report.cohorts.empty and not report.alerts  # counted as open, every lead would make false figures and alerts

    (history_folder(history) / "part-99999999999999999999-0000000000000000-00000000.parquet").write_bytes(b"not parquet")
    report = build_monitoring(cfg, now=NOW.to_pydatetime())
    assert any("could not be read" in n and "score history" in n for n in report.notes) and report.cohorts.empty
    html_path, _ = write_monitoring(cfg, now=NOW.to_pydatetime())
    assert "could not be read" in html_path.read_text(encoding="utf-8")


def test_the_monitor_command(make_project, tmp_path, capsys, monkeypatch):
    import leadscoring.serving.alerts as alerts

    sent: list[object] = []  # reports whose alerts went to the webhook
    monkeypatch.setattr(alerts, "send_monitoring_alerts", lambda cfg, report: sent.append(report) or 0)
    path = make_project(monitoring={"cohort": "month"})
    cfg = load_config(path)
    append_scores(cfg.path("score_history"), ["a", "b"], [10, 90], "v1", START.to_pydatetime())
    assert main(["--config", str(path), "monitor", "--now", NOW.isoformat()]) == 0
    out = capsys.readouterr().out
    stamp = NOW.tz_convert("UTC").strftime("%Y%m%dT%H%M%SZ")  # a report as of another time: files of its own
    assert f"monitoring_as_of_{stamp}.html" in out and f"monitoring_as_of_{stamp}.json" in out
    assert not (cfg.path("results_dir") / "monitoring.json").exists() and not sent  # not replaced, no alert sent
    data = json.loads((cfg.path("results_dir") / f"monitoring_as_of_{stamp}.json").read_text(encoding="utf-8"))
    assert data["cohort"] == "month" and data["cohorts"][0]["cohort"] == "2025-01"
    assert main(["--config", str(path), "monitor"]) == 0
    assert (cfg.path("results_dir") / "monitoring.json").is_file() and len(sent) == 1
    assert main(["--config", str(path), "monitor", "--cohort", "week", "--now", "not a time"]) == 2
    assert "--now" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b'{"ab_test": {"total"', b"[]", b'{"ab_test": "none"}', b'{"at": "caf\xe9"}'])
def test_a_damaged_monitoring_json_is_a_sentence_for_notebook_09(make_project, content):
    """Notebook 09 reads the A/B test from the last report: a damaged one is said, never a failed run."""
    cfg = load_config(make_project())
    path = cfg.path("results_dir") / "monitoring.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    text, table = ab_test_summary(cfg)
    assert text.startswith("The monitoring report could not be read: ") and str(path) in text and table is None


def test_an_a_b_test_configured_after_the_leads_were_first_scored_is_not_called_unconfigured(make_project):
    """Leads first scored before the experiment started have no group: the note says the test
    is configured and waits for leads first scored since, not 'set experiment.control_share'."""
    path = make_project(experiment={"control_share": 0.2, "salt": "s1"})
    cfg = load_config(path)
    append_scores(cfg.path("score_history"), ["a", "b"], [10, 90], "v1", START.to_pydatetime())
    notes = " ".join(build_monitoring(cfg, now=NOW.to_pydatetime()).notes)
    assert "The A/B test is configured (experiment.control_share)" in notes and "No control group is configured" not in notes


def test_a_retrained_model_s_reference_is_said_to_come_from_its_held_out_new_leads():
    """After a challenger promotion the reference ROC-AUC is the challenger's on the held-out
    new leads (its manifest has no validation figures): the alert and the figure say so."""
    from leadscoring.loop.monitoring import reference_auc

    trained = {"validation": {"roc_auc": 0.924}}
    retrained = {"metrics": {"roc_auc": 0.957}, "retrain_holdout": {"measured_on": "held-out new leads"}}
    assert reference_auc(trained) == (0.924, "the model's validation leads")
    assert reference_auc(retrained) == (0.957, "the held-out new leads of its retraining")
