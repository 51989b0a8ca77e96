"""Alerts to a webhook (issue #24, deliverable 3), against a real HTTP receiver on loopback:
a lead entering the top bucket is alerted once (the service, the ``score`` command), not
again, and never a control lead of the A/B test; a 500 is retried until the receiver takes
it; a slow or dead receiver never holds up /score (the service answers first and queues); the
monitoring report's alerts are sent once each."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from leadscoring import cli
from leadscoring.config import AlertsConfig, ConfigError, ProjectConfig, load_config
from leadscoring.errors import LeadDataError
from leadscoring.loop.monitoring import Alert
from leadscoring.serving.alerts import (
    ALERTS_STATE,
    AlertSender,
    JobAlerts,
    alert_scored_leads,
    send_monitoring_alerts,
    webhook_url,
)
from leadscoring.serving.scorer import Scorer
from leadscoring.serving.service import create_app

from .conftest import write_project


def _alerting(cfg: ProjectConfig, tmp_path: Path, url: str, **alerts: object) -> ProjectConfig:
    """``cfg`` with its own score history and state, the service recording (the tests flush),
    and alerts to ``url`` with short backoffs."""
    return cfg.model_copy(
        update={
            "paths": cfg.paths.model_copy(
                update={"score_history": str(tmp_path / "score_history"), "crm_state": str(tmp_path / "crm_state")}
            ),
            "service": cfg.service.model_copy(update={"history_flush_seconds": 3600}),
            "alerts": AlertsConfig(webhook_url=url, backoff=0.01, max_backoff=0.05, **alerts),
        }
    )


def _bodies(cfg: ProjectConfig, rows: pd.DataFrame) -> list[dict]:
    rows = rows.drop(columns=cfg.data.target_column)
    return [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in rows.to_dict("records")]


def _by_bucket(cfg: ProjectConfig, small_models: Path, sample: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The sample's first leads per bucket, as the small model scores them."""
    scored = Scorer.load(cfg, small_models).score_frame(sample.head(200), reasons=False)
    return {b: sample.head(200)[scored["bucket"].to_numpy() == b] for b in scored["bucket"].unique()}


# -- a lead entering the top bucket ---------------------------------------------------------------


def test_the_service_alerts_a_lead_entering_the_top_bucket_once(tmp_path, cfg, small_models, sample, receiver):
    own = _alerting(cfg, tmp_path, receiver.url)
    buckets = _by_bucket(own, small_models, sample)
    hot, cold = _bodies(own, buckets["HOT"].head(1))[0], _bodies(own, buckets["COLD"].head(1))[0]
    app = create_app(own, Scorer.load(own, small_models))
    client = TestClient(app)

    answer = client.post("/score", json=hot).json()
    assert answer["bucket"] == "HOT" and answer["previous_score"] is None
    assert receiver.wait_for(1)
    lead = str(hot[own.data.id_column])
    assert receiver.texts() == [f"Lead {lead} entered HOT (score {answer['score']}, first score): {answer['recommended_action']}"]

    assert client.post("/score", json=hot).status_code == 200  # already HOT (remembered: not in the history yet)
    assert client.post("/score", json=cold).json()["bucket"] == "COLD"  # not an alert level
    assert app.state.alerts.sender.drain(10) == 0 and len(receiver.texts()) == 1

    assert app.state.history_recorder.flush() >= 2  # (the same lead twice in one second is one row)
    fresh = create_app(own, Scorer.load(own, small_models))  # nothing remembered: the score history says HOT
    again = TestClient(fresh).post("/score", json=hot).json()
    assert again["previous_score"] == answer["score"]
    assert fresh.state.alerts.sender.drain(10) == 0 and len(receiver.texts()) == 1


def _score_command(tmp_path, small_models, leads: pd.DataFrame, **sections) -> tuple[ProjectConfig, list[str]]:
    """A project with these configuration ``sections``, ``leads`` written as its export (no
    target), and the ``score`` command's arguments for them (add ``--output``)."""
    config = write_project(tmp_path / "p", **sections)
    pcfg = load_config(config)
    leads.drop(columns=pcfg.data.target_column).to_csv(tmp_path / "leads.csv", sep=pcfg.data.separator, index=False)
    return pcfg, ["--config", str(config), "score", "--input", str(tmp_path / "leads.csv"), "--models-dir", str(small_models)]


def test_the_score_command_alerts_each_entry_once(tmp_path, small_models, sample, receiver, capsys):
    pcfg, args = _score_command(
        tmp_path, small_models, sample.head(30), alerts={"webhook_url": receiver.url, "backoff": 0.01, "max_messages": 50}
    )

    assert cli.main([*args, "--output", str(tmp_path / "run1.csv"), "--no-progress"]) == 0
    scores = pd.read_csv(tmp_path / "run1.csv", dtype=str)
    hot = scores.loc[scores["bucket"] == "HOT", pcfg.data.id_column].tolist()
    assert (
        hot
        and f"alerts: {len(hot)} lead(s) entered HOT; {len(hot)} message(s) delivered to the webhook\n" in capsys.readouterr().out
    )
    texts = receiver.texts()  # the command waits for its alerts before it ends
    assert len(texts) == len(hot) and all(f"Lead {lead} entered HOT" in t for lead, t in zip(hot, texts, strict=True))

    assert cli.main([*args, "--output", str(tmp_path / "run2.csv"), "--no-progress"]) == 0  # previous scores: HOT
    assert "alerts:" not in capsys.readouterr().out and len(receiver.texts()) == len(hot)

    few = load_config(write_project(tmp_path / "q", alerts={"webhook_url": receiver.url, "max_messages": 2}))
    rows = scores.head(0).to_dict("records")  # no lead: no message
    assert alert_scored_leads(few, rows) == JobAlerts(0, 0, 0)
    # run 1 had no previous scores: all enter, in one summary message
    assert alert_scored_leads(few, tmp_path / "run1.csv") == JobAlerts(len(hot), 1, 0)
    assert receiver.texts()[-1].startswith(f"{len(hot)} leads entered HOT: ")

    # a webhook that refuses: the command says the message was not delivered, not that it was sent
    receiver.statuses = [404]
    assert alert_scored_leads(few, tmp_path / "run1.csv") == JobAlerts(len(hot), 0, 1)
    assert "1 NOT delivered (see the log)" in JobAlerts(len(hot), 0, 1).text(["HOT"])


def test_control_leads_of_the_ab_test_are_never_alerted(tmp_path, small_models, sample, receiver, capsys):
    """Sales works a control lead its usual way: an alert would treat it."""
    alerts = {"webhook_url": receiver.url, "backoff": 0.01, "max_messages": 200}
    experiment = {"control_share": 0.5, "salt": "alerts-test"}
    pcfg, args = _score_command(tmp_path, small_models, sample.head(120), alerts=alerts, experiment=experiment)
    assert cli.main([*args, "--output", str(tmp_path / "scores.csv"), "--no-progress"]) == 0

    scores = pd.read_csv(tmp_path / "scores.csv", dtype=str)
    hot = scores[scores["bucket"] == "HOT"]
    treated = hot.loc[hot["experiment_group"] == "treatment", pcfg.data.id_column].tolist()
    held_out = hot.loc[hot["experiment_group"] == "control", pcfg.data.id_column].tolist()
    assert treated and held_out  # both groups have HOT leads: the test can tell them apart
    alerted = [t.split()[1] for t in receiver.texts()]
    assert sorted(alerted) == sorted(treated)


# -- delivery -----------------------------------------------------------------------------------


def test_a_500_is_retried_until_the_receiver_takes_it_and_the_url_is_never_logged(receiver, caplog, monkeypatch, tmp_path):
    waits: list[float] = []
    sender = AlertSender(receiver.url, retries=5, backoff=1.0, max_backoff=30.0, sleep=waits.append)
    receiver.statuses = [500, 503]
    with caplog.at_level(logging.DEBUG):
        assert sender.post("first") is True
    assert receiver.texts() == ["first"] * 3 and len(waits) == 2
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0  # exponential backoff, jittered

    receiver.statuses = [404]  # refused: final, not retried
    with caplog.at_level(logging.WARNING):
        assert sender.post("second") is False
    assert receiver.texts()[-1] == "second" and len(receiver.bodies) == 4 and len(waits) == 2
    assert "HTTP 404" in caplog.text and "127.0.0.1" in caplog.text and "not-a-real-token" not in caplog.text

    gone = AlertSender("http://127.0.0.1:9/hook", retries=2, sleep=waits.append)  # nothing listens there
    assert gone.post("lost") is False and len(waits) == 4

    shipped = load_config(write_project(tmp_path / "p"))
    assert webhook_url(shipped) is None  # off by default
    monkeypatch.setenv("LEADSCORING_ALERTS_WEBHOOK", receiver.url)
    assert webhook_url(shipped) == receiver.url  # the environment's URL takes the configuration's place
    monkeypatch.setenv("LEADSCORING_ALERTS_WEBHOOK", "not a url with-a-secret")
    with pytest.raises(ConfigError, match=r"\$LEADSCORING_ALERTS_WEBHOOK") as err:
        webhook_url(shipped)
    assert "secret" not in str(err.value)
    with pytest.raises(ConfigError, match="alerts.levels"):
        load_config(write_project(tmp_path / "q", alerts={"levels": ["SCORCHING"]}))


def test_a_slow_or_dead_receiver_never_holds_up_score(tmp_path, cfg, small_models, sample, receiver, caplog):
    receiver.delay = 3.0
    own = _alerting(cfg, tmp_path, receiver.url)
    hot = _bodies(own, _by_bucket(own, small_models, sample)["HOT"].head(3))
    client = TestClient(create_app(own, Scorer.load(own, small_models)))
    for body in hot:
        start = time.perf_counter()
        answer = client.post("/score", json=body)
        elapsed = time.perf_counter() - start
        assert answer.status_code == 200 and answer.json()["bucket"] == "HOT"
        assert elapsed < receiver.delay and not receiver.finished.is_set()  # answered while the receiver still works
    assert receiver.wait_for(1)  # the alert did go out, after the answer

    dead = _alerting(cfg, tmp_path / "dead", "http://127.0.0.1:9/hook")  # nothing listens there
    client = TestClient(create_app(dead, Scorer.load(dead, small_models)))
    start = time.perf_counter()
    assert client.post("/score", json=hot[0]).status_code == 200
    assert time.perf_counter() - start < receiver.delay

    sender = AlertSender(receiver.url, queue_size=1)  # a bounded queue: beyond, dropped with a warning
    with caplog.at_level(logging.WARNING):
        accepted = [sender.send(f"m{i}") for i in range(4)]
    assert accepted.count(False) >= 2 and sender.dropped >= 2 and "alert dropped" in caplog.text


# -- the monitoring report's alerts ---------------------------------------------------------------


def test_monitoring_alerts_are_sent_once_each(tmp_path, cfg, receiver):
    own = _alerting(cfg, tmp_path, receiver.url, retries=0)
    drift = Alert("drift", "Drift of the score: PSI above 0.25 in 2025-06-02, up to 0.31.", ("2025-06-02",), "score")
    lift = Alert("lift", "The lift is not significant after 1,200 outcomes in the A/B test.", condition="not significant, a")
    report = SimpleNamespace(alerts=[drift, lift])

    assert send_monitoring_alerts(own, report) == 2
    assert receiver.texts() == [f"Monitoring alert: {drift.message}", f"Monitoring alert: {lift.message}"]
    assert send_monitoring_alerts(own, report) == 0 and len(receiver.bodies) == 2  # sent once each
    assert (own.path("crm_state") / ALERTS_STATE).is_file()

    # The next night: the same alerts with figures that moved are not sent again; a new cohort
    # drifting and the treatment converting less are new alerts.
    moved = [
        Alert("drift", "Drift of the score: PSI above 0.25 in 2025-06-02, up to 0.34.", ("2025-06-02",), "score"),
        Alert("lift", "The lift is not significant after 1,500 outcomes in the A/B test.", condition="not significant, a"),
    ]
    spread = Alert(
        "drift", "Drift of the score: PSI above 0.25 in 2025-06-02 to 2025-06-09.", ("2025-06-02", "2025-06-09"), "score"
    )
    worse = Alert("lift", "The treatment group converts less than the control group.", condition="negative, a")
    receiver.statuses = [500]  # not delivered (no retry here): not recorded, sent the next time
    assert send_monitoring_alerts(own, SimpleNamespace(alerts=[*moved, spread])) == 0
    assert send_monitoring_alerts(own, SimpleNamespace(alerts=[*moved, spread, worse])) == 2
    assert receiver.texts()[-2:] == [f"Monitoring alert: {spread.message}", f"Monitoring alert: {worse.message}"]
    assert len(receiver.bodies) == 5  # the two first, the refused one, these two

    off = own.model_copy(update={"alerts": own.alerts.model_copy(update={"monitoring": False})})
    assert send_monitoring_alerts(off, SimpleNamespace(alerts=[Alert("auc", "new")])) == 0


def test_alerts_sent_by_an_older_version_are_not_sent_again(tmp_path, cfg, receiver):
    """State files written before alerts had keys named them by their kind and words."""
    import hashlib
    import json

    own = _alerting(cfg, tmp_path, receiver.url, retries=0)
    drift = Alert("drift", "Drift of the score: PSI above 0.25 in 2025-06-02, up to 0.31.", ("2025-06-02",), "score")
    old_key = hashlib.sha256(f"drift\x1f{drift.message}".encode()).hexdigest()[:24]
    state = own.path("crm_state") / ALERTS_STATE
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"monitoring": {old_key: {"kind": "drift", "sent_at": "2026-11-30T02:30:00Z"}}}))
    assert send_monitoring_alerts(own, SimpleNamespace(alerts=[drift])) == 0 and not receiver.bodies
    assert old_key not in json.loads(state.read_text())["monitoring"]  # kept under its new key
    assert send_monitoring_alerts(own, SimpleNamespace(alerts=[drift])) == 0 and not receiver.bodies


@pytest.mark.parametrize(
    "content",
    [b'{"monitoring": {"ab', b'{"monitoring": "caf\xe9"}', b"[]", b'{"monitoring": ["x"]}'],
    ids=["truncated", "not UTF-8", "a list", "monitoring not an object"],
)
def test_a_damaged_record_of_the_alerts_sent_sends_nothing_and_is_kept(tmp_path, cfg, receiver, content):
    """Read as empty, it would send every alert again and be overwritten: a one-line error."""
    own = _alerting(cfg, tmp_path, receiver.url, retries=0)
    state = own.path("crm_state") / ALERTS_STATE
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_bytes(content)
    drift = Alert("drift", "Drift of the score: PSI above 0.25 in 2025-06-02, up to 0.31.", ("2025-06-02",), "score")
    with pytest.raises(LeadDataError) as err:
        send_monitoring_alerts(own, SimpleNamespace(alerts=[drift]))
    message = str(err.value)
    assert "\n" not in message and str(state) in message and "delete it to send every current monitoring alert" in message
    assert not receiver.bodies and state.read_bytes() == content
