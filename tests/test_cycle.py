"""``leadscoring cycle``: the nightly loop against a recorded CRM on loopback (tests/loop_crm.py):
what each step does and logs, what is rescored and pushed, the retraining decision, the lock,
a dry run, failures, and SIGTERM at each step followed by a second cycle, which must end where
one uninterrupted cycle does. The same loop against a real CRM (BottleCRM) is the last test."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from leadscoring.artifacts import SCORE_MODEL, read_manifest
from leadscoring.cli import main
from leadscoring.config import ProjectConfig, load_config
from leadscoring.crm.push import read_state
from leadscoring.io import exclusive_lock
from leadscoring.loop.cycle import CYCLE_LOCK, CYCLE_REJECTED, CYCLE_SCORES, EXIT_LOCKED, SIGTERM_AT_ENV
from leadscoring.loop.maturity import matured_outcomes, retrain_due
from leadscoring.loop.retrain import decide, split_holdout
from leadscoring.serving.history import append_scores, read_history
from leadscoring.tracking import read_run_log, run_log_path, runs_rows

from .conftest import ROOT, write_project
from .live_service import served
from .loop_crm import LoopCrm, crm_section

#: Pushed fields that change only when the score does (no scored_at): a push sends changed scores alone.
CRM_FIELDS = {"score": "lead_score", "bucket": "score_bucket", "grade": "lead_grade"}
OPEN = 60  # open leads in the CRM and the export


@pytest.fixture()
def crm():
    server = LoopCrm()
    yield server
    server.close()


def _project(
    tmp: Path, crm: LoopCrm, models: Path, maturity_days: float = 60, alerts: dict | None = None, **loop: Any
) -> ProjectConfig:
    settings = {"min_new_converted": 10, "min_new_lost": 10, **loop}
    path = write_project(
        tmp,
        crm=crm_section(crm.url),
        loop=settings,
        scoring__crm_fields=CRM_FIELDS,
        monitoring__maturity_days=maturity_days,
        service__reload_seconds=0.2,
        **({"alerts": alerts} if alerts else {}),
    )
    cfg = load_config(path)
    shutil.copytree(models, cfg.path("models_dir"))
    return cfg


def _export(cfg: ProjectConfig, rows: pd.DataFrame, name: str = "open_leads.csv") -> Path:
    """The client's nightly export: ``rows`` in the raw layout, without the outcome."""
    path = cfg.root / name
    out = rows.drop(columns=[cfg.data.target_column]).astype(object).where(lambda d: d.notna(), "")
    path.write_text(out.to_csv(sep=cfg.data.separator, index=False, lineterminator="\n"), encoding="utf-8")
    return path


def _open_in_crm(cfg: ProjectConfig, crm: LoopCrm, rows: pd.DataFrame) -> Path:
    """``rows`` as open leads: added to the CRM and written as tonight's export (its path)."""
    crm.add(rows["id"].tolist())
    return _export(cfg, rows)


@pytest.fixture()
def unseen(leads, sample) -> pd.DataFrame:
    """Leads the small models never saw, ids as text."""
    rows = leads[~leads["id"].isin(sample["id"])].head(400).reset_index(drop=True)
    return rows.assign(id=rows["id"].astype(str))


def _log(cfg: ProjectConfig) -> list[dict[str, Any]]:
    path = cfg.path("docs_dir") / "run_log.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.is_file() else []


def _cycle(cfg: ProjectConfig, export: Path, capsys, *flags: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["--config", str(cfg.source), "cycle", "--leads", str(export), "--no-progress", *flags])
    return code, capsys.readouterr().out


def _steps(cfg: ProjectConfig, cycle_index: int = -1) -> dict[str, dict[str, Any]]:
    """The run log's lines of one cycle (the last by default), by step."""
    lines = _log(cfg)
    ids = list(dict.fromkeys(line["cycle"] for line in lines if "cycle" in line))
    return {line["step"]: line for line in lines if line.get("cycle") == ids[cycle_index]}


def _cycle_while_serving(cfg: ProjectConfig, export: Path, probe_row: pd.DataFrame, capsys) -> tuple[int, str]:
    """Run the cycle while the service (``leadscoring serve``'s app, real HTTP on loopback)
    answers; check the service answers with the models the cycle promoted within 30 s, without
    a restart. ``probe_row``: one lead (raw row) the test scores, under an id of its own."""
    import httpx

    from leadscoring.serving.service import create_app, lead_model

    fields = set(lead_model(cfg).model_fields)
    row = json.loads(probe_row.to_json(orient="records"))[0]
    probe = {k: v for k, v in row.items() if k in fields and v is not None} | {cfg.data.id_column: "probe"}
    version_on_disk = lambda: read_manifest(cfg.path("models_dir") / SCORE_MODEL)["sha256"][:12]  # noqa: E731
    with served(create_app(cfg), cfg) as url, httpx.Client(base_url=url, timeout=30) as http:
        served_version = lambda: http.post("/score", json=probe).json()["model_version"]  # noqa: E731
        first = served_version()
        loaded_at = http.get("/health").json()["loaded_at"]
        assert first == version_on_disk()
        code, out = _cycle(cfg, export, capsys)
        second = version_on_disk()
        deadline = time.monotonic() + 30
        while (now_serving := served_version()) != second and time.monotonic() < deadline:
            time.sleep(0.1)
        assert second != first and now_serving == second  # the promoted models, without a restart
        health = http.get("/health").json()
        assert health["model_version"] == second and health["loaded_at"] != loaded_at
    return code, out


# -- day 1, day 2 ------------------------------------------------------------------------------


def test_day_one_scores_and_pushes_every_open_lead_then_a_quiet_night_sends_nothing(tmp_path, crm, small_models, unseen, capsys):
    cfg = _project(tmp_path, crm, small_models)
    open_rows = unseen.head(OPEN)
    export = _open_in_crm(cfg, crm, open_rows)

    code, out = _cycle(cfg, export, capsys)
    assert code == 0, out
    steps = _steps(cfg)
    assert [s for s in steps] == ["pull", "retrain", "rescore", "push", "monitoring", "cycle"]
    assert steps["pull"]["status"] == "ok" and steps["pull"]["figures"]["appended"] == OPEN  # every lead, open
    assert steps["retrain"]["status"] == "skipped" and "not due: 0 converted and 0 lost" in steps["retrain"]["summary"]
    assert steps["rescore"]["figures"]["new"] == OPEN and steps["rescore"]["figures"]["rescored"] == OPEN
    assert steps["push"]["figures"]["sent"] == OPEN and steps["cycle"]["status"] == "ok"
    assert set(crm.pushes) == set(open_rows["id"]) and all(n == 1 for n in crm.pushes.values())
    scores = pq.read_table(cfg.path("crm_state") / CYCLE_SCORES).to_pandas().set_index("id")
    assert "reasons" not in scores.columns and "fit_score" not in scores.columns  # not pushed: not computed
    for lead, fields in ((k, v.custom_fields) for k, v in crm.leads.items()):
        assert fields == {
            "lead_score": scores.loc[lead, "score"],
            "score_bucket": scores.loc[lead, "bucket"],
            "lead_grade": scores.loc[lead, "grade"],
        }
    history = read_history(cfg.path("score_history")).to_pandas()
    assert sorted(history["lead_id"]) == sorted(open_rows["id"])
    assert (cfg.path("results_dir") / "monitoring.html").is_file() and (cfg.path("results_dir") / "monitoring.json").is_file()
    assert steps["monitoring"]["status"] == "ok" and "cohort(s)" in steps["monitoring"]["summary"]
    runs = openpyxl.load_workbook(cfg.path("docs_dir") / "tracking.xlsx")["Runs"]  # the cycle's row in the workbook
    header, *rows_read = list(runs.iter_rows(values_only=True))
    (row,) = [dict(zip(header, r, strict=True)) for r in rows_read if r[header.index("Kind")] == "Cycle"]
    assert row["Run / cycle id"] == steps["cycle"]["cycle"] and row["Status"] == "ok" and row["Leads scored"] == OPEN
    assert row["Decision"] == f"retrain: {steps['retrain']['summary']}"
    assert "cycle " in out and "push" in out and "sent 60" in out

    # The next night nothing changed: nothing rescored, nothing sent.
    code, out = _cycle(cfg, export, capsys)
    assert code == 0, out
    steps = _steps(cfg)
    assert steps["pull"]["figures"]["appended"] == 0
    assert steps["rescore"]["figures"]["rescored"] == 0
    assert steps["push"]["figures"]["sent"] == 0 and steps["push"]["figures"]["skipped"] == OPEN
    assert all(n == 1 for n in crm.pushes.values())
    assert len(read_history(cfg.path("score_history"))) == OPEN


def test_the_rescored_leads_entering_the_top_bucket_are_alerted_once(
    tmp_path, crm, small_models, unseen, receiver, capsys, monkeypatch
):
    from leadscoring.loop import cycle as cycle_module

    def disk_full(path: Path) -> Any:
        raise OSError(28, "No space left on device")

    cfg = _project(tmp_path, crm, small_models, alerts={"webhook_url": receiver.url, "backoff": 0.01, "max_messages": 100})
    rows = unseen.head(OPEN)
    export = _open_in_crm(cfg, crm, rows)
    # The first night the open leads' scores cannot be written, after the score history and the alerts.
    monkeypatch.setattr(cycle_module, "atomic_path", disk_full)
    assert _cycle(cfg, export, capsys)[0] == 1
    assert _steps(cfg)["rescore"]["status"] == "failed" and not (cfg.path("crm_state") / CYCLE_SCORES).exists()
    history = read_history(cfg.path("score_history")).to_pandas()
    hot = sorted(history.loc[history["score"] >= cfg.scoring.buckets[0].min_score, "lead_id"])
    assert hot and len(hot) < OPEN  # some leads enter the top bucket, not all
    entered = lambda: sorted(t.split()[1] for t in receiver.texts() if t.startswith("Lead "))  # noqa: E731
    assert entered() == hot  # alerted: the scores are in the history

    # The next night every open lead is rescored (no scores kept): the history says they were HOT already.
    monkeypatch.undo()
    assert _cycle(cfg, export, capsys)[0] == 0
    assert _steps(cfg)["rescore"]["figures"]["rescored"] == OPEN and _steps(cfg)["rescore"]["figures"]["alerted"] == 0
    scores = pq.read_table(cfg.path("crm_state") / CYCLE_SCORES).to_pandas()
    assert sorted(scores.loc[scores["bucket"] == "HOT", "id"]) == hot and entered() == hot


def test_an_unset_credential_stops_the_cycle_before_its_first_step(tmp_path, crm, small_models, unseen, capsys, monkeypatch):
    """Cron without its environment file: no step could reach the CRM, so the cycle is a user
    error (exit 2, one line naming the variable) and runs no step."""
    import yaml

    cfg = _project(tmp_path, crm, small_models)
    conf = yaml.safe_load(cfg.source.read_text(encoding="utf-8"))
    conf["crm"].update(auth="bearer", token_env="LOOP_CRM_TOKEN")
    cfg.source.write_text(yaml.safe_dump(conf, sort_keys=False), encoding="utf-8")
    monkeypatch.delenv("LOOP_CRM_TOKEN", raising=False)
    capsys.readouterr()
    assert main(["--config", str(cfg.source), "cycle", "--leads", str(_export(cfg, unseen.head(5))), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "LOOP_CRM_TOKEN is not set" in err and not _log(cfg)


def test_a_webhook_problem_never_fails_the_scoring(tmp_path, crm, small_models, unseen, receiver, capsys, monkeypatch):
    from leadscoring.serving import alerts as alerts_module

    bad = _project(tmp_path / "bad", crm, small_models)
    rows = unseen.head(10)
    crm.add(rows["id"].tolist())
    monkeypatch.setenv("LEADSCORING_ALERTS_WEBHOOK", "hooks.example.com/no-scheme")
    capsys.readouterr()
    assert main(["--config", str(bad.source), "cycle", "--leads", str(_export(bad, rows)), "--no-progress"]) == 2
    assert "$LEADSCORING_ALERTS_WEBHOOK" in capsys.readouterr().err and not _log(bad)  # no step ran
    monkeypatch.delenv("LEADSCORING_ALERTS_WEBHOOK")

    def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("the alert queue is gone")

    monkeypatch.setattr(alerts_module, "alert_scored_leads", broken)
    cfg = _project(tmp_path / "ok", crm, small_models, alerts={"webhook_url": "http://127.0.0.1:9/hook"})
    assert _cycle(cfg, _export(cfg, rows), capsys)[0] == 0
    steps = _steps(cfg)
    assert steps["rescore"]["status"] == "ok" and steps["rescore"]["figures"]["alerts_error"] == "the alert queue is gone"
    assert steps["push"]["figures"]["sent"] == 10

    # a webhook that refuses every message: the step says so, and does not count them as sent
    monkeypatch.undo()
    receiver.statuses = [404] * OPEN
    refused = _project(tmp_path / "refused", crm, small_models, alerts={"webhook_url": receiver.url, "max_messages": OPEN})
    assert _cycle(refused, _open_in_crm(refused, crm, unseen.head(OPEN)), capsys)[0] == 0
    rescore = _steps(refused)["rescore"]
    assert rescore["status"] == "ok" and rescore["figures"]["alerted"] > 0
    assert rescore["figures"]["alerts_undelivered"] == rescore["figures"]["alerted"]  # one message per lead
    assert f"({rescore['figures']['alerted']} alert message(s) NOT delivered to the webhook: see the log)" in rescore["summary"]


def test_changed_inputs_are_rescored_and_only_changed_scores_pushed(tmp_path, crm, small_models, unseen, capsys):
    cfg = _project(tmp_path, crm, small_models)
    open_rows = unseen.head(OPEN).reset_index(drop=True)
    crm.add(open_rows["id"].tolist())
    assert _cycle(cfg, _export(cfg, open_rows), capsys)[0] == 0
    first = pq.read_table(cfg.path("crm_state") / CYCLE_SCORES).to_pandas().set_index("id")
    pool = unseen.iloc[OPEN:].reset_index(drop=True)
    pool_scores = _scores_of(cfg, pool, tmp_path)

    # Lead a takes the inputs of a lead scoring differently; lead b those of one with the same
    # score, bucket and grade: both are rescored, only a's payload changed.
    a, b = open_rows["id"].iloc[0], open_rows["id"].iloc[1]
    payload = lambda s: (s["score"], s["bucket"], s["grade"])  # noqa: E731
    other = next(i for i, s in pool_scores.iterrows() if payload(s) != payload(first.loc[a]))
    same = next(i for i, s in pool_scores.iterrows() if payload(s) == payload(first.loc[b]))
    changed = open_rows.copy()
    cols = [c for c in changed.columns if c != "id"]
    changed.loc[0, cols] = pool.loc[other, cols].to_numpy()
    changed.loc[1, cols] = pool.loc[same, cols].to_numpy()
    code, out = _cycle(cfg, _export(cfg, changed), capsys)
    assert code == 0, out
    steps = _steps(cfg)
    assert steps["rescore"]["figures"]["inputs_changed"] == 2 and steps["rescore"]["figures"]["rescored"] == 2
    assert steps["push"]["figures"] == {"sent": 1, "skipped": OPEN - 1, "failed": 0, "pending": 0}
    assert crm.pushes[a] == 2 and crm.pushes[b] == 1
    assert crm.leads[a].custom_fields["lead_score"] == pool_scores.loc[other, "score"]
    history = read_history(cfg.path("score_history")).to_pandas()
    assert sorted(history["lead_id"].value_counts()[lambda n: n > 1].index) == sorted([a, b])


def test_two_cycles_in_the_same_second_keep_both_scorings(tmp_path, crm, small_models, unseen, monkeypatch):
    """A second cycle started in the same second (a rerun after a failure) is another scoring
    job: its rescored leads are not taken for the first one's rows appended again."""
    from leadscoring.loop.cycle import run_cycle
    from leadscoring.serving import scorer

    monkeypatch.setattr(scorer, "utc_now", lambda: "2026-12-07T02:30:00Z")
    now = datetime(2026, 12, 7, 2, 30, tzinfo=UTC)
    cfg = _project(tmp_path, crm, small_models)
    rows = unseen.head(10).reset_index(drop=True)
    crm.add(rows["id"].tolist())
    first = run_cycle(cfg, _export(cfg, rows), now=now)
    assert first.exit_code == 0
    changed = rows.copy()
    cols = [c for c in changed.columns if c != "id"]
    changed.loc[0, cols] = unseen.loc[OPEN, cols].to_numpy()  # lead 0's inputs change
    second = run_cycle(cfg, _export(cfg, changed), now=now)
    assert second.exit_code == 0 and second.cycle_id != first.cycle_id
    history = read_history(cfg.path("score_history"), columns=["lead_id", "job_id"]).to_pandas()
    assert history["lead_id"].value_counts()[rows["id"].iloc[0]] == 2 and len(history) == 11
    assert set(history["job_id"]) == {f"cycle-{first.cycle_id}", f"cycle-{second.cycle_id}"}
    runs = pd.DataFrame(runs_rows(cfg, read_run_log(run_log_path(cfg))))  # the workbook's Runs sheet: a row per cycle
    assert (runs["kind"] == "Cycle").sum() == 2


def _scores_of(cfg: ProjectConfig, rows: pd.DataFrame, tmp: Path) -> pd.DataFrame:
    """What ``leadscoring score`` gives ``rows`` (no history), by position."""
    src, out = tmp / "pool.csv", tmp / "pool_scores.csv"
    src.write_text(rows.drop(columns="compra").to_csv(sep=";", index=False), encoding="utf-8")
    assert (
        main(["--config", str(cfg.source), "score", "--input", str(src), "--output", str(out), "--no-progress", "--no-history"])
        == 0
    )
    return pd.read_csv(out, dtype={"id": str}).reset_index(drop=True)


def test_outcomes_make_a_retraining_due_and_its_decision_is_logged(tmp_path, crm, small_models, unseen, capsys):
    cfg = _project(tmp_path, crm, small_models, tolerance=1.0)
    rows = unseen.head(OPEN + 40).reset_index(drop=True)
    export = _open_in_crm(cfg, crm, rows)
    assert _cycle(cfg, export, capsys)[0] == 0
    before = read_manifest(cfg.path("models_dir") / SCORE_MODEL)["sha256"]

    # The sales team closes 40 leads: as many won as lost, as the outcomes of the shipped data say.
    closed = rows.iloc[OPEN:]
    for lead, won in zip(closed["id"], closed["compra"].astype(int), strict=True):
        crm.set_status(lead, "won" if won else "lost")
    code, out = _cycle_while_serving(cfg, export, rows.iloc[[0]], capsys)  # the service picks up the promotion
    assert code == 0, out
    steps = _steps(cfg)
    retrain = steps["retrain"]
    assert retrain["status"] == "ok" and retrain["figures"]["due"] is True and retrain["figures"]["promoted"] is True
    assert "challenger promoted: not worse than the champion" in retrain["summary"]
    assert retrain["figures"]["champion"]["roc_auc"] > 0 and retrain["figures"]["challenger"]["brier"] > 0
    held = retrain["figures"]["holdout"]  # e.g. "the newest 13 of 25 '0', 8 of 15 '1' leads matured since ..."
    assert held.startswith("the newest") and set(_held_out_outcomes(held)) == {"'0'", "'1'"}
    assert retrain["figures"]["holdout_leads"] == sum(int(p.split()[0]) for p in held.split(" leads")[0][11:].split(", "))
    assert read_manifest(cfg.path("models_dir") / SCORE_MODEL)["sha256"] != before
    # The closed leads are left out; every open lead is rescored with the new models.
    rescore = steps["rescore"]["figures"]
    assert rescore["closed_left_out"] == 40 and rescore["open_leads"] == OPEN
    assert rescore["model_changed"] == OPEN and rescore["rescored"] == OPEN
    assert "challenger promoted" in out

    # Not due again the next night: the outcomes it learned from count no more.
    assert _cycle(cfg, export, capsys)[0] == 0
    assert _steps(cfg)["retrain"]["status"] == "skipped"


def _held_out_outcomes(holdout: str) -> list[str]:
    """The outcomes named in a holdout's description ("the newest 3 of 5 '0', 2 of 3 '1' leads ...")."""
    return [part.split()[-1] for part in holdout.split(" leads")[0].removeprefix("the newest ").split(", ")]


def test_the_champion_is_kept_when_the_challenger_is_worse_and_its_reason_logged(
    tmp_path, crm, small_models, unseen, capsys, monkeypatch
):
    import leadscoring.tracking

    cfg = _project(tmp_path, crm, small_models, tolerance=-1.0)  # an impossible bar
    rows = unseen.head(80).reset_index(drop=True)
    crm.add(rows["id"].tolist())
    assert _cycle(cfg, _export(cfg, rows), capsys)[0] == 0  # day 1: every lead scored, its inputs kept
    for lead, won in zip(rows["id"].iloc[20:], rows["compra"].iloc[20:].astype(int), strict=True):
        crm.set_status(lead, "won" if won else "lost")
    before = read_manifest(cfg.path("models_dir") / SCORE_MODEL)["sha256"]
    # A cycle that retrains reads the outcome history once (its pull) and rewrites the workbook once.
    history_reads, workbook_writes = [], []
    read_csv, write_tracking = pd.read_csv, leadscoring.tracking.write_tracking

    def counted_read_csv(source: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(str(source)) == cfg.path("outcome_history"):
            history_reads.append(source)
        return read_csv(source, *args, **kwargs)

    monkeypatch.setattr(pd, "read_csv", counted_read_csv)
    monkeypatch.setattr(leadscoring.tracking, "write_tracking", lambda c: workbook_writes.append(c) or write_tracking(c))
    code, out = _cycle(cfg, _export(cfg, rows), capsys)
    assert code == 0, out
    monkeypatch.undo()
    assert len(history_reads) == 1 and len(workbook_writes) == 1
    retrain = _steps(cfg)["retrain"]
    assert retrain["figures"]["promoted"] is False and "champion kept: the challenger falls short of the rule" in retrain["summary"]
    events = [line for line in _log(cfg) if line.get("event") == "retrain"]
    assert len(events) == 1 and events[0]["promoted"] is False  # the decision in the run log all the same
    assert read_manifest(cfg.path("models_dir") / SCORE_MODEL)["sha256"] == before
    assert _cycle(cfg, _export(cfg, rows), capsys)[0] == 0
    assert _steps(cfg)["retrain"]["status"] == "skipped"  # the attempt counts: not due again until new outcomes mature


# -- when an outcome counts, when a retraining is due, the rule ---------------------------------


def test_open_leads_mature_as_not_converted_after_maturity_days(tmp_path, crm, small_models):
    from leadscoring.crm.outcomes import OutcomeRow, append_outcome_rows

    cfg = _project(tmp_path, crm, small_models, maturity_days=30)
    t = datetime(2026, 1, 1, tzinfo=UTC)
    append_outcome_rows(
        cfg.path("outcome_history"),
        [
            OutcomeRow("won", "converted", t + timedelta(days=5), t + timedelta(days=4), False, "{}"),
            OutcomeRow("waiting", "open", t, None, False, "{}"),
            OutcomeRow("late", "open", t + timedelta(days=20), None, False, "{}"),
        ],
    )
    at = lambda days: matured_outcomes(cfg, t + timedelta(days=days)).set_index("lead_id")  # noqa: E731
    assert list(at(10).index) == ["won"] and at(10).loc["won", "matured_at"] == t + timedelta(days=4)  # the outcome time
    assert list(at(31).index) == ["won", "waiting"] and at(31).loc["waiting", "outcome"] == "lost"
    assert at(31).loc["waiting", "matured_at"] == at(31).loc["waiting", "outcome_at"] == t + timedelta(days=30)
    assert bool(at(31).loc["waiting", "aged"])
    assert list(at(60).index) == ["won", "waiting", "late"]

    # A scored lead ages from its first scoring, as the monitoring report counts it, even when
    # the CRM reported it open before.
    append_scores(cfg.path("score_history"), ["waiting"], [40], "m1", t + timedelta(days=10))
    assert list(at(31).index) == ["won"]
    assert at(41).loc["waiting", "matured_at"] == t + timedelta(days=40)


def test_retraining_is_due_on_new_matured_outcomes_or_the_model_s_age(tmp_path, crm, small_models):
    cfg = _project(tmp_path, crm, small_models, min_new_converted=2, min_new_lost=3, max_age_days=90)
    trained = datetime(2026, 6, 1, tzinfo=UTC)
    manifest = {"created_at": trained.isoformat()}
    after = lambda d: trained + timedelta(days=d)  # noqa: E731
    matured = pd.DataFrame(
        {
            "lead_id": list("abcdef"),
            "outcome": ["converted", "converted", "lost", "lost", "lost", "lost"],
            "matured_at": pd.to_datetime([after(-1), after(1), after(2), after(3), after(4), after(5)], utc=True),
        }
    )
    due = retrain_due(cfg, manifest, matured, after(10))
    assert not due.due and (due.new_converted, due.new_lost) == (1, 4) and "not due" in due.reason
    matured.loc[0, "matured_at"] = pd.Timestamp(after(6))
    due = retrain_due(cfg, manifest, matured, after(10))
    assert due.due and "2 converted and 4 lost" in due.reason
    assert not retrain_due(cfg, manifest, matured, after(10), last_attempt=after(5)).due  # since the last attempt
    old = retrain_due(cfg, manifest, matured.iloc[:0], after(91))
    assert old.due and "91 days old" in old.reason


def test_the_promotion_rule_and_its_reasons():
    champ = {"roc_auc": 0.80, "brier": 0.15}
    assert decide(champ, {"roc_auc": 0.797, "brier": 0.152}, 0.005) == (
        True,
        "challenger promoted: not worse than the champion: "
        "challenger AUC 0.7970 vs 0.8000, Brier 0.1520 vs 0.1500 (tolerance 0.005)",
    )
    kept = decide(champ, {"roc_auc": 0.70, "brier": 0.15}, 0.005, champion_age_days=30, max_age_days=90)
    assert kept[0] is False and kept[1].startswith("champion kept: the challenger falls short of the rule")
    old = decide(champ, {"roc_auc": 0.70, "brier": 0.15}, 0.005, champion_age_days=120, max_age_days=90)
    assert old[0] is True and "the champion is 120 days old (max_age_days 90)" in old[1]
    # a small holdout that cannot tell them apart (DeLong standard error 0.06): age still promotes ...
    noisy = decide(champ, {"roc_auc": 0.70, "brier": 0.15}, 0.005, 120, 90, auc_gap=(0.10, 0.06))
    assert noisy[0] is True
    # ... but not a challenger that ranks the held-out leads worse beyond doubt
    worse = decide(champ, {"roc_auc": 0.70, "brier": 0.15}, 0.005, 120, 90, auc_gap=(0.10, 0.02))
    assert worse[0] is False and "worse beyond doubt (ROC-AUC +0.1000 in the champion's favour" in worse[1]
    assert "95 % interval +0.0608 to +0.1392" in worse[1]


def test_the_paired_delong_standard_error_matches_the_bootstrap():
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from leadscoring.training.evaluation import auc_difference

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    a, b = y + rng.normal(0, 1, 300), y + rng.normal(0, 1.5, 300)
    gap, se = auc_difference(y, a, b)
    assert gap == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b))
    boot = []
    for _ in range(1000):
        i = rng.integers(0, 300, 300)
        boot.append(roc_auc_score(y[i], a[i]) - roc_auc_score(y[i], b[i]))
    assert se == pytest.approx(np.std(boot), rel=0.1)


def test_the_holdout_is_the_newest_matured_cohort_of_each_outcome():
    t = datetime(2026, 1, 1, tzinfo=UTC)
    new = pd.DataFrame({"id": [f"l{i}" for i in range(10)], "y": [0, 1] * 5})
    days = (9, 1, 8, 2, 7, 3, 6, 4, 5, 0)  # l0 matured on day 9, l1 on day 1, ...
    times = pd.Series(pd.to_datetime([t + timedelta(days=d) for d in days], utc=True))
    train, held, what = split_holdout(new, "y", 0.5, 0, times, since=t + timedelta(days=1, hours=12))
    # matured after `since`: y=0 on days 9, 8, 7, 6, 5 (l0 l2 l4 l6 l8); y=1 on days 2, 3, 4 (l3 l5 l7)
    assert sorted(held["id"]) == ["l0", "l2", "l4", "l5", "l7"] and len(train) == 5
    assert what.startswith("the newest 3 of 5 '0', 2 of 3 '1' leads matured since 2026-01-02T12:00:00")
    # All the latest closures lost: the newest converted lead from before `since` is lent.
    times[new["y"] == 1] = pd.Timestamp(t)
    _, held, what = split_holdout(new, "y", 0.5, 0, times, since=t + timedelta(days=1))
    assert sorted(held["y"]) == [0, 0, 0, 1] and "1 of 1 '1'" in what
    train, held, what = split_holdout(new, "y", 0.5, 0)
    assert len(held) == 5 and set(held["y"]) == {0, 1} and "stratified random" in what


# -- dry run, lock, failures -------------------------------------------------------------------


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_dry_run_says_what_each_step_would_do_and_writes_nothing(tmp_path, crm, small_models, unseen, capsys):
    cfg = _project(tmp_path, crm, small_models)
    rows = unseen.head(OPEN + 30).reset_index(drop=True)
    export = _open_in_crm(cfg, crm, rows)
    assert _cycle(cfg, export, capsys)[0] == 0
    for lead, won in zip(rows["id"].iloc[OPEN:], rows["compra"].iloc[OPEN:].astype(int), strict=True):
        crm.set_status(lead, "won" if won else "lost")
    before, pushes = _tree(tmp_path), dict(crm.pushes)
    code, out = _cycle(cfg, export, capsys, "--dry-run")
    assert code == 0, out
    assert _tree(tmp_path) == before and dict(crm.pushes) == pushes  # nothing written, nothing sent
    lines = out.splitlines()
    assert lines[0].startswith("pull") and "30 change(s) would be appended" in lines[0] and "Dry run: nothing written" in lines[0]
    assert lines[1].startswith("retrain") and "would retrain: due: " in lines[1]
    assert lines[2].startswith("rescore") and "would rescore 0 of 60 open lead(s)" in lines[2] and "30 converted, lost" in lines[2]
    assert lines[3].startswith("push") and "dry run: would send 0, skip 60" in lines[3]
    assert lines[4].startswith("monitoring") and "would write the monitoring report" in lines[4]
    assert "dry-run" in lines[5]


def test_a_second_cycle_while_one_runs_exits_75_and_does_nothing(tmp_path, crm, small_models, unseen, capsys):
    cfg = _project(tmp_path, crm, small_models)
    crm.add(unseen["id"].head(5).tolist())
    export = _export(cfg, unseen.head(5))
    with exclusive_lock(cfg.path("crm_state") / CYCLE_LOCK, "leadscoring cycle"):  # as a running cycle holds it
        before = _tree(tmp_path)
        capsys.readouterr()
        code = main(["--config", str(cfg.source), "cycle", "--leads", str(export), "--no-progress"])
        err = capsys.readouterr().err
        after = _tree(tmp_path)
    assert code == EXIT_LOCKED == 75
    assert "another cycle is running, nothing done" in err and len(err.strip().splitlines()) == 1
    assert after == before and not crm.requests


def test_a_failed_push_is_logged_exits_1_and_the_next_cycle_sends_what_is_left(tmp_path, crm, small_models, unseen, capsys):
    cfg = _project(tmp_path, crm, small_models)
    rows = unseen.head(10)
    crm.add(rows["id"].tolist()[:9])  # the CRM does not know the tenth lead yet
    export = _export(cfg, rows)
    code, out = _cycle(cfg, export, capsys)
    assert code == 1
    steps = _steps(cfg)
    assert steps["push"]["status"] == "failed" and steps["push"]["figures"]["sent"] == 9
    assert list(steps["push"]["figures"]["failures"]) == [rows["id"].iloc[9]] and steps["cycle"]["status"] == "failed"
    assert steps["monitoring"]["status"] == "ok"  # the steps that do not need the push still run
    crm.add([rows["id"].iloc[9]])
    assert _cycle(cfg, export, capsys)[0] == 0
    assert _steps(cfg)["push"]["figures"]["sent"] == 1 and crm.pushes[rows["id"].iloc[9]] == 1


@pytest.mark.parametrize("damaged", [False, True], ids=["too-few-outcomes", "damaged-model"])
def test_a_retraining_that_cannot_learn_or_fails_keeps_the_champion_and_the_leads_are_scored(
    tmp_path, crm, small_models, unseen, capsys, monkeypatch, damaged
):
    """Due by age with no outcome to learn from: skipped, the attempt counts (exit 0). Due and
    failing (a damaged model): failed, no attempt recorded, tried again the next night (exit 1).
    Either way the champion stays and the open leads are scored and pushed."""
    from leadscoring.artifacts import ModelIntegrityError
    from leadscoring.loop import retrain as retrain_module

    def fails(*args: Any, **kwargs: Any) -> None:
        raise ModelIntegrityError("04_Modelos/lead_scoring_model.pkl: SHA-256 does not match its manifest")

    if damaged:
        monkeypatch.setattr(retrain_module, "retrain", fails)
    cfg = _project(tmp_path, crm, small_models, max_age_days=1e-9)  # due by age (a model older than 0.1 ms)
    rows = unseen.head(10)
    crm.add(rows["id"].tolist())
    before = read_manifest(cfg.path("models_dir") / SCORE_MODEL)["sha256"]
    code, out = _cycle(cfg, _export(cfg, rows), capsys)
    assert code == (1 if damaged else 0), out
    steps = _steps(cfg)
    retrain = steps["retrain"]
    assert retrain["figures"]["due"] is True and "days old" in retrain["figures"]["why"]
    state = cfg.path("crm_state") / "cycle_state.json"
    if damaged:
        assert retrain["status"] == "failed" and retrain["figures"]["error"] == "ModelIntegrityError"
        assert "SHA-256 does not match" in retrain["summary"] and not state.exists()
    else:
        assert retrain["status"] == "skipped" and "but not trained: " in retrain["summary"]
        assert retrain["summary"].endswith("the champion stays") and "converted or lost" in retrain["figures"]["not_trained"]
        assert "last_retrain_at" in json.loads(state.read_text())  # the attempt counts
    assert steps["rescore"]["status"] == "ok" and steps["push"]["figures"]["sent"] == 10
    assert read_manifest(cfg.path("models_dir") / SCORE_MODEL)["sha256"] == before


@pytest.mark.parametrize(
    ("damage", "step", "expected"),
    [
        ("state", "retrain", "cycle_state.json: last_retrain_at is 1735689600, not an ISO 8601 time; delete it"),
        ("scores", "rescore", "a scores file without the column(s) ['inputs_digest', 'model_set'] (written by another"),
    ],
)
def test_a_damaged_state_file_fails_its_step_in_one_line_naming_it(
    tmp_path, crm, small_models, unseen, capsys, damage, step, expected
):
    cfg = _project(tmp_path, crm, small_models)
    rows = unseen.head(10)
    crm.add(rows["id"].tolist())
    assert _cycle(cfg, _export(cfg, rows), capsys)[0] == 0
    if damage == "state":
        (cfg.path("crm_state") / "cycle_state.json").write_text('{"last_retrain_at": 1735689600}', encoding="utf-8")
    else:
        pq.write_table(pa.table({"id": ["a"]}), cfg.path("crm_state") / CYCLE_SCORES)
    code, out = _cycle(cfg, _export(cfg, rows), capsys)
    assert code == 1, out
    failed = _steps(cfg)[step]
    assert failed["status"] == "failed" and expected in failed["summary"] and "\n" not in failed["summary"]


def test_a_failed_pull_moves_no_watermark_and_the_next_cycle_pulls_what_it_missed(tmp_path, crm, small_models, unseen, capsys):
    cfg = _project(tmp_path, crm, small_models)
    rows = unseen.head(OPEN + 20).reset_index(drop=True)
    export = _open_in_crm(cfg, crm, rows)
    assert _cycle(cfg, export, capsys)[0] == 0
    watermark = (cfg.path("crm_state") / "pull_watermark.json").read_text()

    for lead in rows["id"].iloc[OPEN:]:
        crm.set_status(lead, "lost")
    crm.list_status = 403  # the CRM refuses the token tonight
    code, out = _cycle(cfg, export, capsys)
    assert code == 1, out
    steps = _steps(cfg)
    assert steps["pull"]["status"] == "failed" and "403" in steps["pull"]["summary"]
    assert steps["retrain"]["status"] == "skipped" and steps["rescore"]["status"] == "ok"  # it needs the pull; the rescore not
    assert steps["push"]["status"] == "ok" and steps["cycle"]["status"] == "failed"
    assert (cfg.path("crm_state") / "pull_watermark.json").read_text() == watermark

    crm.list_status = None
    assert _cycle(cfg, export, capsys)[0] == 0
    assert _steps(cfg)["pull"]["figures"]["appended_outcomes"]["lost"] == 20
    assert _steps(cfg)["rescore"]["figures"]["closed_left_out"] == 20


def test_a_failed_rescore_pushes_nothing_and_the_next_cycle_scores_every_lead(
    tmp_path, crm, small_models, unseen, capsys, monkeypatch
):
    from leadscoring.serving import history as history_module

    def full(*args: Any, **kwargs: Any) -> int:
        raise OSError(28, "No space left on device")

    real = history_module.append_scores
    monkeypatch.setattr(history_module, "append_scores", full)
    cfg = _project(tmp_path, crm, small_models)
    rows = unseen.head(OPEN)
    export = _open_in_crm(cfg, crm, rows)
    code, out = _cycle(cfg, export, capsys)
    assert code == 1, out
    steps = _steps(cfg)
    assert steps["rescore"]["status"] == "failed" and "No space left" in steps["rescore"]["summary"]
    assert steps["push"]["status"] == "skipped" and not crm.pushes  # the push needs the rescore
    assert not (cfg.path("crm_state") / CYCLE_SCORES).exists()  # the history first: nothing taken as scored

    monkeypatch.setattr(history_module, "append_scores", real)
    assert _cycle(cfg, export, capsys)[0] == 0
    assert _steps(cfg)["rescore"]["figures"]["new"] == OPEN and _steps(cfg)["push"]["figures"]["sent"] == OPEN
    assert len(read_history(cfg.path("score_history"))) == OPEN


def test_a_bad_row_of_the_export_is_set_aside_and_the_other_leads_scored_and_pushed(tmp_path, crm, small_models, unseen, capsys):
    cfg = _project(tmp_path, crm, small_models)
    conf = yaml.safe_load(cfg.source.read_text(encoding="utf-8"))
    conf["scoring"]["bad_rows"] = "set_aside"
    cfg.source.write_text(yaml.safe_dump(conf), encoding="utf-8")
    cfg = load_config(cfg.source)
    rows = unseen.head(OPEN)
    numeric = cfg.model_data.columns.numeric[0]
    crm.add(rows["id"].tolist())
    typo = rows.astype(object).copy()
    typo.loc[7, numeric] = "lots"  # line 9 of the export
    code, out = _cycle(cfg, _export(cfg, typo), capsys)
    assert code == 0, out
    rescore = _steps(cfg)["rescore"]
    assert rescore["figures"]["set_aside"] == 1 and rescore["figures"]["rescored"] == OPEN - 1
    assert "1 row(s) of the export set aside" in rescore["summary"] and "line 9: column" in rescore["summary"]
    rejected = pd.read_csv(cfg.path("crm_state") / CYCLE_REJECTED, sep=cfg.data.separator, dtype=str)
    assert rejected["line"].tolist() == ["line 9"] and rejected[numeric].tolist() == ["lots"]
    assert set(crm.pushes) == set(rows["id"]) - {rows["id"].iloc[7]}

    # fixed the next night: scored as a new lead, and the rejected rows of last night are gone
    code, out = _cycle(cfg, _export(cfg, rows), capsys)
    assert code == 0, out
    assert _steps(cfg)["rescore"]["figures"]["new"] == 1 and set(crm.pushes) == set(rows["id"])
    assert not (cfg.path("crm_state") / CYCLE_REJECTED).exists()

    # a column partly in another format: more than scoring.max_bad_share, the step fails and nothing is pushed
    other = rows.astype(object)
    other.loc[:9, numeric] = "n.a."
    pushed = dict(crm.pushes)
    code, out = _cycle(cfg, _export(cfg, other), capsys)
    assert code == 1 and _steps(cfg)["rescore"]["status"] == "failed" and crm.pushes == pushed
    assert f"10 of {OPEN} rows have problems (16.7%), more than scoring.max_bad_share" in _steps(cfg)["rescore"]["summary"]


def test_the_cycle_keeps_the_ab_groups_and_pushes_only_the_marker_for_control_leads(
    tmp_path, crm, small_models, unseen, receiver, capsys
):
    """The A/B test through the cycle: each lead's group in the score history, the control
    leads' CRM records get only the marker, and no control lead is alerted."""
    from leadscoring.serving.experiment import experiment_groups

    experiment = {"control_share": 0.3, "salt": "cycle-test", "control_crm": "marker", "control_field": "scoring_group"}
    path = write_project(
        tmp_path,
        crm=crm_section(crm.url),
        scoring__crm_fields=CRM_FIELDS,
        experiment=experiment,
        loop={"min_new_converted": 10},
        alerts={"webhook_url": receiver.url, "backoff": 0.01, "max_messages": 100},
    )
    cfg = load_config(path)
    shutil.copytree(small_models, cfg.path("models_dir"))
    rows = unseen.head(OPEN)
    crm.add(rows["id"].tolist())
    assert _cycle(cfg, _export(cfg, rows), capsys)[0] == 0
    expected = dict(zip(rows["id"], experiment_groups(rows["id"], cfg.experiment), strict=True))
    history = read_history(cfg.path("score_history"), columns=["lead_id", "experiment_group"]).to_pandas()
    assert dict(zip(history["lead_id"], history["experiment_group"], strict=True)) == expected
    control = {lead for lead, group in expected.items() if group == "control"}
    assert control and len(control) < OPEN
    for lead, record in crm.leads.items():
        if lead in control:
            assert record.custom_fields == {"scoring_group": "control"}
        else:
            assert set(record.custom_fields) == set(CRM_FIELDS.values())
    scores = pq.read_table(cfg.path("crm_state") / CYCLE_SCORES).to_pandas()
    hot = set(scores.loc[scores["bucket"] == "HOT", "id"])
    assert hot & control and hot - control  # HOT leads in both groups: the test can tell them apart
    assert {t.split()[1] for t in receiver.texts() if t.startswith("Lead ")} == hot - control


# -- SIGTERM at each step, then a second cycle ---------------------------------------------------

#: Where the cycle is stopped: by the CRM when a request of a kind arrives (mid-pull: the first
#: page; mid-push: the second lead), or by the cycle's own test hook (a step's start, or where it
#: starts writing: the promotion, the rescored leads' scores).
KILL_POINTS = {
    "pull": ("crm", "list", 1),
    "retrain": ("hook", "retrain"),
    "retrain:write": ("hook", "retrain:write"),
    "rescore:write": ("hook", "rescore:write"),
    "push": ("crm", "push", 2),
}


def _state(cfg: ProjectConfig, crm: LoopCrm) -> dict[str, Any]:
    """What a cycle leaves behind, in terms that two runs of the same cycle share (no times,
    no float bit-identity)."""
    models = cfg.path("models_dir")
    manifest = read_manifest(models / SCORE_MODEL)
    history = read_history(cfg.path("score_history")).to_pandas().sort_values("scored_at", kind="stable")
    scores = pq.read_table(cfg.path("crm_state") / CYCLE_SCORES).to_pandas().set_index("id")
    cycle_state = json.loads((cfg.path("crm_state") / "cycle_state.json").read_text())
    return {
        "outcome_history": cfg.path("outcome_history").read_bytes(),
        "watermark": {
            k: v["watermark"] for k, v in json.loads((cfg.path("crm_state") / "pull_watermark.json").read_text()).items()
        },
        "model": {k: manifest.get(k) for k in ("data_fingerprint", "training_rows", "retrained_from")},
        "model_auc": round(manifest.get("metrics", {}).get("roc_auc", 0), 3),
        "archived_sets": len(list((models / "versions").iterdir())) if (models / "versions").is_dir() else 0,
        "cycle_state": sorted(cycle_state),
        "scores": {lead: (int(r["score"]), r["bucket"], r["grade"]) for lead, r in scores.iterrows()},
        "history_latest": history.drop_duplicates("lead_id", keep="last").set_index("lead_id")["score"].to_dict(),
        "history_rows": history["lead_id"].value_counts().to_dict(),
        "push_state": {lead: digest for (_, lead), digest in read_state(cfg.path("crm_state") / "push-state.jsonl").items()},
        "crm": {lead: dict(v.custom_fields) for lead, v in crm.leads.items()},
    }


@pytest.mark.slow
def test_sigterm_at_each_step_then_the_next_cycle_ends_where_one_uninterrupted_cycle_does(
    tmp_path, crm, small_models, unseen, capsys
):
    # Day 1 is done; then the sales team closes 40 leads. Day 2 is the cycle under test.
    day1 = tmp_path / "day1"
    cfg = _project(day1, crm, small_models, tolerance=1.0)  # tolerance 1: the challenger is promoted
    rows = unseen.head(OPEN + 40).reset_index(drop=True)
    export = _open_in_crm(cfg, crm, rows)
    assert _cycle(cfg, export, capsys)[0] == 0
    for lead, won in zip(rows["id"].iloc[OPEN:], rows["compra"].iloc[OPEN:].astype(int), strict=True):
        crm.set_status(lead, "won" if won else "lost")
    crm_before = crm.snapshot()

    def fresh(name: str) -> ProjectConfig:
        crm.restore(crm_before)
        shutil.copytree(day1, tmp_path / name)
        return load_config(tmp_path / name / "01_Documentos" / "config.yaml")

    reference = fresh("uninterrupted")
    assert _cycle(reference, reference.root / export.name, capsys)[0] == 0
    assert _steps(reference)["retrain"]["figures"]["promoted"] is True
    expected = _state(reference, crm)

    for point, how in KILL_POINTS.items():
        project = fresh(point.replace(":", "_"))
        env = {**os.environ, SIGTERM_AT_ENV: how[1] if how[0] == "hook" else ""}
        argv = [sys.executable, "-m", "leadscoring.cli", "--config", str(project.source), "cycle"]
        argv += ["--leads", str(project.root / export.name), "--no-progress"]
        child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        if how[0] == "crm":
            crm.kill_at(how[1], how[2], child.pid)
        out, err = child.communicate(timeout=600)
        assert child.returncode == 143, (point, out, err[-3000:])
        assert "leadscoring cycle: interrupted: terminated by SIGTERM" in err, (point, err[-2000:])
        stopped = _steps(project)
        step = point.split(":")[0]
        assert stopped[step]["status"] == "interrupted" and stopped["cycle"]["status"] == "interrupted", (point, stopped)
        assert not (project.path("crm_state") / CYCLE_LOCK).exists()  # released on the way out

        crm.kill = None
        assert _cycle(project, project.root / export.name, capsys)[0] == 0, point
        assert _steps(project)["cycle"]["status"] == "ok"
        got = _state(project, crm)
        for key, value in expected.items():
            assert got[key] == value, (point, key)


# -- end to end, with a real CRM -----------------------------------------------------------------

EXAMPLE = ROOT / "01_Documentos" / "crm_bottlecrm.example.yaml"


@pytest.mark.slow
@pytest.mark.bottlecrm
def test_day_one_score_and_push_day_two_the_cycle_with_bottlecrm(bottlecrm, tmp_path, small_models, unseen, monkeypatch, capsys):
    """Day 1: score and push (the commands of the README), and the service runs; the sales
    team converts 12 leads and closes 12; day 2: one `cycle` on the export of the open leads
    pulls them, retrains on the inputs the closed leads were scored with (promoted, with its
    reason: tolerance 1), rescores the open leads whose inputs or models changed and pushes
    only the changed scores; the service answers with the new models without a restart."""
    import yaml

    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    path = write_project(
        tmp_path,
        crm={**example["crm"], "url": bottlecrm.url},
        scoring__crm_fields=example["scoring"]["crm_fields"],
        loop={"min_new_converted": 10, "min_new_lost": 10, "tolerance": 1.0},  # tolerance 1: promoted
        service__reload_seconds=0.2,
    )
    cfg = load_config(path)
    shutil.copytree(small_models, cfg.path("models_dir"))
    monkeypatch.setenv(cfg.crm.token_env, bottlecrm.token)
    fields = cfg.scoring.crm_fields

    won = unseen[unseen["compra"].astype(int) == 1].head(12)
    lost = unseen[unseen["compra"].astype(int) == 0].head(12)
    still_open = unseen[~unseen["id"].isin([*won["id"], *lost["id"]])].head(16)
    rows = pd.concat([won, lost, still_open], ignore_index=True)
    rows["id"] = [bottlecrm.create_lead() for _ in range(len(rows))]
    export = _export(cfg, rows, "leads_day1.csv")

    # Day 1: score and push.
    day1 = tmp_path / "scores_day1.csv"
    assert main(["--config", str(cfg.source), "score", "--input", str(export), "--output", str(day1), "--no-progress"]) == 0
    assert main(["--config", str(cfg.source), "push", "--scores", str(day1), "--no-progress"]) == 0
    scores1 = pd.read_csv(day1, dtype={"id": str}).set_index("id")

    # The outcomes arrive: 12 converted, 12 closed; one open lead's inputs change in the export.
    for lead in rows["id"].iloc[:12]:
        bottlecrm.convert(lead)
    for lead in rows["id"].iloc[12:24]:
        bottlecrm.close(lead)
    changed = rows.copy()
    cols = [c for c in changed.columns if c not in ("id", "compra")]
    moved = changed["id"].iloc[24]
    donor = unseen[~unseen["id"].isin(rows["id"])]
    donor = donor.iloc[[i for i in range(len(donor)) if donor.iloc[i]["compra"] != rows.iloc[24]["compra"]][0]]
    changed.loc[24, cols] = donor[cols].to_numpy()
    export2 = _export(cfg, changed.iloc[24:], "leads_day2.csv")  # tonight's export: the open leads only
    before = {lead: bottlecrm.lead(lead) for lead in rows["id"]}

    # Day 2: the cycle, while the service answers.
    code, out = _cycle_while_serving(cfg, export2, changed.iloc[[30]], capsys)
    assert code == 0, out
    steps = _steps(cfg)
    assert steps["pull"]["figures"]["appended_outcomes"]["converted"] == 12
    assert steps["pull"]["figures"]["appended_outcomes"]["lost"] == 12
    retrain = steps["retrain"]
    assert retrain["status"] == "ok" and retrain["figures"]["due"] is True
    assert retrain["figures"]["new_outcomes"] == 24  # from the inputs recorded when day 1 scored them: not in tonight's export
    assert retrain["figures"]["promoted"] is True
    assert retrain["summary"].split("; ")[-1].startswith("challenger promoted")
    assert set(retrain["figures"]["champion"]) >= {"roc_auc", "brier"} and set(retrain["figures"]["challenger"]) >= {
        "roc_auc",
        "brier",
    }
    rescore = steps["rescore"]["figures"]
    assert rescore["closed_left_out"] == 0 and rescore["open_leads"] == 16 and rescore["new"] == 16  # the cycle's first night
    now = pq.read_table(cfg.path("crm_state") / CYCLE_SCORES).to_pandas().set_index("id")
    after = {lead: bottlecrm.lead(lead) for lead in rows["id"]}
    payload = lambda s, lead: {fields[f]: s.loc[lead, f] for f in fields}  # noqa: E731
    changed_scores = {lead for lead in now.index if payload(now, lead) != payload(scores1, lead)}
    assert moved in changed_scores
    pushed = {lead for lead in rows["id"] if after[lead]["updated_at"] != before[lead]["updated_at"]}
    assert pushed == changed_scores and steps["push"]["figures"]["sent"] == len(changed_scores)
    assert steps["push"]["figures"]["skipped"] == 16 - len(changed_scores)
    for lead in now.index:
        custom = after[lead]["custom_fields"]
        assert {k: custom[k] for k in ("lead_score", "score_bucket")} == {
            "lead_score": now.loc[lead, "score"],
            "score_bucket": now.loc[lead, "bucket"],
        }
    assert all(after[lead]["status"] in ("converted", "closed") for lead in rows["id"].iloc[:24])


def test_the_cycle_s_scorings_keep_their_inputs(tmp_path, crm, small_models, unseen, capsys):
    """A retraining learns from the inputs each lead was scored with: the cycle's own scorings
    record them in the score history, as every other scoring path does."""
    import json

    cfg = _project(tmp_path, crm, small_models)
    rows = unseen.head(OPEN).reset_index(drop=True)
    crm.add(rows["id"].tolist())
    assert _cycle(cfg, _export(cfg, rows), capsys)[0] == 0
    history = read_history(cfg.path("score_history"), columns=["lead_id", "inputs"]).to_pandas()
    assert len(history) == OPEN and history["inputs"].notna().all()
    first = json.loads(history["inputs"].iloc[0])
    assert first and set(first) <= set(cfg.data.columns.all)
