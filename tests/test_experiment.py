"""The A/B test's control group at scoring time (issue #24, deliverable 1): each newly scored
lead gets a stable ``experiment_group`` from a hash of its id and the salt, the same on every
path (the ``score`` command, notebook 10's ``score_stream``, the service) and in every run,
recorded in the score history; a salt or share that would move already-scored leads is
refused; a control lead's CRM record gets nothing or only the marker; the monitoring report
reads the groups."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from leadscoring import cli
from leadscoring.config import ConfigError, ExperimentConfig, ProjectConfig, load_config
from leadscoring.crm.outcomes import OutcomeRow, append_outcome_rows, status_text
from leadscoring.crm.push import push_scores
from leadscoring.loop.monitoring import build_monitoring
from leadscoring.serving.batch import score_file, score_stream
from leadscoring.serving.experiment import CONTROL, TREATMENT, check_groups, draws, experiment_groups
from leadscoring.serving.history import append_scores_file, new_job_id, read_history
from leadscoring.serving.payloads import crm_payloads
from leadscoring.serving.scorer import Scorer
from leadscoring.serving.service import create_app

from .conftest import write_project
from .test_monitoring import _install_model

EXPERIMENT = {"control_share": 0.3, "salt": "spring-test"}
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday


def _project(tmp_path, **experiment: object) -> ProjectConfig:
    """A project of this test's own (score history included) with the experiment on."""
    return load_config(write_project(tmp_path / "p", experiment={**EXPERIMENT, **experiment}))


def _leads_file(cfg: ProjectConfig, sample: pd.DataFrame, path, n: int = 60) -> pd.DataFrame:
    rows = sample.head(n).drop(columns=cfg.data.target_column)
    rows.to_csv(path, sep=cfg.data.separator, index=False)
    return rows


def _bodies(cfg: ProjectConfig, rows: pd.DataFrame) -> list[dict]:
    return [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in rows.to_dict("records")]


def _groups(frame: pd.DataFrame, id_column: str) -> dict[str, str]:
    return dict(zip(frame[id_column].astype(str), frame["experiment_group"], strict=True))


# -- the draw ----------------------------------------------------------------------------------


def test_the_share_of_control_leads_is_within_binomial_bounds_and_stable():
    ids = [f"lead-{i}" for i in range(10_000)]
    exp = ExperimentConfig(control_share=0.1, salt="s1")
    groups = experiment_groups(ids, exp)
    control = int((groups == CONTROL).sum())
    sd = (10_000 * 0.1 * 0.9) ** 0.5  # 30
    assert abs(control - 1_000) <= 4 * sd  # 880 ... 1120
    assert set(groups) == {CONTROL, TREATMENT}
    assert (experiment_groups(list(reversed(ids)), exp)[::-1] == groups).all()  # per lead, whatever the order
    assert (experiment_groups(ids, exp) == groups).all()  # the same in every run
    u = draws(ids, "s1")
    assert ((u >= 0) & (u < 1)).all() and abs(u.mean() - 0.5) < 0.02
    assert experiment_groups([12345], exp)[0] == experiment_groups(["12345"], exp)[0]  # an id is its text
    other = experiment_groups(ids, ExperimentConfig(control_share=0.1, salt="s2"))
    assert (other != groups).mean() > 0.1  # another salt, another draw


def test_the_experiment_is_off_by_default_and_needs_a_salt(tmp_path, cfg, small_models, sample):
    assert not ProjectConfig.model_fields["experiment"].default.enabled
    assert not cfg.experiment.enabled
    leads = tmp_path / "leads.csv"
    _leads_file(cfg, sample, leads, 5)
    score_file(cfg, leads, tmp_path / "off.csv", models_dir=small_models)
    assert "experiment_group" not in pd.read_csv(tmp_path / "off.csv", nrows=0).columns  # off: no column anywhere
    with pytest.raises(ConfigError, match="salt") as err:
        load_config(write_project(tmp_path / "bad", experiment={"control_share": 0.1}))
    assert "\n" not in str(err.value)


# -- every path, every run -----------------------------------------------------------------------


def test_a_lead_gets_the_same_group_on_every_path_and_in_every_run(tmp_path, small_models, sample, capsys):
    pcfg = _project(tmp_path)
    own = pcfg.model_copy(update={"service": pcfg.service.model_copy(update={"history_flush_seconds": 3600})})
    id_col = pcfg.data.id_column
    rows = _leads_file(pcfg, sample, tmp_path / "leads.csv")
    expected = dict(zip(rows[id_col].astype(str), experiment_groups(rows[id_col], pcfg.experiment), strict=True))
    assert set(expected.values()) == {CONTROL, TREATMENT}

    # the score command (twice: two runs), with its score history appends
    config = pcfg.source
    for out in ("run1.csv", "run2.csv"):
        args = ["--config", str(config), "score", "--input", str(tmp_path / "leads.csv"), "--output", str(tmp_path / out)]
        assert cli.main([*args, "--models-dir", str(small_models), "--no-progress"]) == 0
        assert _groups(pd.read_csv(tmp_path / out, dtype=str), id_col) == expected
    # notebook 10's function, to parquet
    score_stream(Scorer.load(pcfg, small_models), tmp_path / "leads.csv", tmp_path / "nb.parquet", progress=False)
    assert _groups(pd.read_parquet(tmp_path / "nb.parquet"), id_col) == expected
    # the service: one lead and a batch
    app = create_app(own, Scorer.load(own, small_models))
    client = TestClient(app)
    bodies = _bodies(pcfg, rows)
    one = client.post("/score", json=bodies[0]).json()
    batch = client.post("/score/batch", json=bodies[1:]).json()
    served = {str(a["lead_id"]): a["experiment_group"] for a in [one, *batch]}
    assert served == expected
    assert app.state.history_recorder.flush() == len(bodies)

    history = read_history(pcfg.path("score_history"), ["lead_id", "experiment_group"]).to_pandas()
    assert len(history) == 3 * len(rows)  # two score runs and the service
    assert (history["experiment_group"] == history["lead_id"].map(expected)).all()


def test_a_salt_or_share_that_would_move_scored_leads_is_refused(tmp_path, small_models, sample):
    pcfg = _project(tmp_path)
    rows = _leads_file(pcfg, sample, tmp_path / "leads.csv", 40)
    score_file(pcfg, tmp_path / "leads.csv", tmp_path / "s.csv", models_dir=small_models, scored_at="2026-01-05T09:00:00Z")
    append_scores_file(pcfg.path("score_history"), tmp_path / "s.csv", pcfg.data.id_column, job_id=new_job_id())
    assert check_groups(pcfg.experiment, pcfg.path("score_history")) == len(rows)  # unchanged settings: fine

    for change in ({"salt": "another"}, {"control_share": 0.6}):
        moved = pcfg.model_copy(update={"experiment": pcfg.experiment.model_copy(update=change)})
        with pytest.raises(ConfigError, match=r"experiment.salt or control_share.*keeps its group for life") as err:
            Scorer.load(moved, small_models)
        assert "\n" not in str(err.value) and "lead " in str(err.value)
    # a new experiment on purpose: groups recorded before it started are an earlier experiment's
    restarted = pcfg.model_copy(
        update={
            "experiment": pcfg.experiment.model_copy(update={"salt": "another", "started_at": datetime(2026, 2, 1, tzinfo=UTC)})
        }
    )
    assert Scorer.load(restarted, small_models) is not None
    # ending it (share 0) is always allowed
    ended = pcfg.model_copy(update={"experiment": ExperimentConfig()})
    assert check_groups(ended.experiment, ended.path("score_history")) == 0


# -- the CRM -------------------------------------------------------------------------------------


def _scores(n: int = 12) -> pd.DataFrame:
    ids = [f"L{i}" for i in range(n)]
    return pd.DataFrame(
        {
            "id": ids,
            "score": np.arange(n) * 7 % 100,
            "bucket": ["WARM"] * n,
            "recommended_action": ["Nurture"] * n,
            "experiment_group": [CONTROL if i % 3 == 0 else TREATMENT for i in range(n)],
        }
    )


def _pushed(scores: pd.DataFrame, tmp_path, experiment: ExperimentConfig | None) -> tuple[dict, object]:
    seen: dict[str, dict] = {}

    def crm(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen[body["lead_id"]] = body["custom_fields"]
        return httpx.Response(204)

    summary = push_scores(
        scores,
        "http://crm.test",
        "id",
        state_file=tmp_path / f"state-{len(list(tmp_path.iterdir()))}.jsonl",
        transport=httpx.MockTransport(crm),
        experiment=experiment,
        retries=0,
    )
    return seen, summary


def test_push_sends_nothing_or_only_the_marker_for_control_leads(tmp_path):
    scores = _scores()
    control = set(scores.loc[scores["experiment_group"] == CONTROL, "id"])
    treatment = set(scores["id"]) - control

    seen, summary = _pushed(scores, tmp_path, ExperimentConfig(control_share=0.1, salt="x", control_crm="none"))
    assert set(seen) == treatment  # nothing at all for a control lead
    assert all("predictive_score" in fields for fields in seen.values())
    assert summary.sent == len(treatment) and summary.held_out == len(control)
    assert f"{len(control)} control lead(s) held out" in str(summary)

    marker = ExperimentConfig(control_crm="marker", control_field="lead_group_c", control_value="control")
    seen, summary = _pushed(scores, tmp_path, marker)
    assert set(seen) == set(scores["id"]) and summary.held_out == 0
    for lead in control:
        assert seen[lead] == {"lead_group_c": "control"}  # the marker only, no score field
    for lead in treatment:
        assert "predictive_score" in seen[lead] and "lead_group_c" not in seen[lead]

    # the default (no experiment section given) holds control leads out too; scores without groups push all
    assert {p["lead_id"] for p in crm_payloads(scores, "id")} == treatment
    assert len(crm_payloads(scores.drop(columns="experiment_group"), "id")) == len(scores)


# -- the monitoring report -------------------------------------------------------------------------


def test_the_monitoring_report_reads_the_groups_recorded_at_scoring(tmp_path, small_models, sample):
    pcfg = load_config(
        write_project(tmp_path / "p", experiment=EXPERIMENT, monitoring={"maturity_days": 30, "min_per_class": 5, "min_leads": 5})
    )
    _install_model(pcfg, small_models, sample)
    id_col = pcfg.data.id_column
    _leads_file(pcfg, sample, tmp_path / "leads.csv", 200)
    score_file(pcfg, tmp_path / "leads.csv", tmp_path / "s.csv", scored_at=T0.strftime("%Y-%m-%dT%H:%M:%SZ"))
    append_scores_file(pcfg.path("score_history"), tmp_path / "s.csv", id_col, job_id=new_job_id())
    scores = pd.read_csv(tmp_path / "s.csv", dtype={id_col: str})
    converted = scores["score"].astype(int) >= 50  # an outcome per lead, known by hand
    outcomes = [
        OutcomeRow(
            lead,
            "converted" if won else "lost",
            T0 + timedelta(days=3),
            T0 + timedelta(days=3),
            False,
            status_text({"s": "won" if won else "lost"}),
        )
        for lead, won in zip(scores[id_col], converted, strict=True)
    ]
    append_outcome_rows(pcfg.path("outcome_history"), outcomes)

    report = build_monitoring(pcfg, now=T0 + timedelta(days=60))
    assert report.ab is not None and report.ab_total is not None
    control = (scores["experiment_group"] == CONTROL).to_numpy()
    assert report.totals["experiment_leads"] == len(scores)
    assert report.ab_total["control_leads"] == control.sum() and report.ab_total["treatment_leads"] == (~control).sum()
    assert report.ab_total["control_conversions"] == (converted & control).sum()
    assert report.ab_total["treatment_conversions"] == (converted & ~control).sum()
    assert not any("No control group" in n for n in report.notes)
