"""The scoring service (FastAPI app through TestClient), CRM write-back against a real
local HTTP server that fails some requests, retraining, drift and A/B lift."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from leadscoring.crm.push import push_scores
from leadscoring.loop.monitoring import ab_lift, psi
from leadscoring.serving.scorer import Scorer
from leadscoring.serving.service import create_app

LEAD = {
    "id": 1,
    "origen": "API",
    "fuente": "Google",
    "visitas_total": 3,
    "tiempo_en_site_total": 900,
    "ocupacion": "Working Professional",
    "descarga_lm": "No",
}


@pytest.fixture(scope="module")
def client(cfg, small_models):
    return TestClient(create_app(cfg, Scorer.load(cfg, small_models)))


def test_health_and_score(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and len(health["model_version"]) == 12 and health["segments"] is True
    r = client.post("/score", json=LEAD)
    assert r.status_code == 200
    body = r.json()
    assert list(body) == [
        "lead_id",
        "probability",
        "score",
        "bucket",
        "recommended_action",
        "grade",
        "fit_score",
        "engagement_score",
        "segment",
        "reasons",
        "previous_score",
        "trend",
        "model_version",
        "scored_at",
    ]
    assert body["lead_id"] == "1" and body["score"] == round(100 * body["probability"])
    assert 1 <= len(body["reasons"]) <= 6 and body["model_version"] == health["model_version"]
    assert all(set(r) == {"variable", "label", "value", "effect", "evidence"} for r in body["reasons"])
    effects = [r["effect"] for r in body["reasons"]]
    assert effects == sorted([e for e in effects if e > 0], reverse=True) + sorted(e for e in effects if e < 0)
    assert 0 <= body["fit_score"] <= 100 and 0 <= body["engagement_score"] <= 100 and body["grade"] in "ABCD"
    assert body["trend"] == "new" and body["previous_score"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["scored_at"])
    assert float(r.headers["server-timing"].split("score;dur=")[1]) > 0


def test_batch_matches_single(client):
    batch = client.post("/score/batch", json=[LEAD, {**LEAD, "id": 2, "tiempo_en_site_total": 10}]).json()
    assert [b["lead_id"] for b in batch] == ["1", "2"]
    single = client.post("/score", json=LEAD).json()
    assert {**batch[0], "scored_at": None} == {**single, "scored_at": None}
    assert client.post("/score/batch", json=[]).json() == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"visitas_total": "abc"}, "visitas_total"),
        ({"visitas_total": -1}, "visitas_total"),
        ({"descarga_lm": "Maybe"}, "descarga_lm"),
        ({"colour": "red"}, "colour"),
        ({"id": None}, "id"),
    ],
)
def test_bad_requests_are_422_naming_the_field(client, change, field):
    lead = {k: v for k, v in {**LEAD, **change}.items() if v is not None}
    r = client.post("/score", json=lead)
    assert r.status_code == 422
    assert field in [str(p) for p in r.json()["detail"][0]["loc"]]


def test_unseen_category_is_scored(client):
    r = client.post("/score", json={**LEAD, "fuente": "TikTok", "ocupacion": "Astronaut"})
    assert r.status_code == 200 and 0 <= r.json()["probability"] <= 1


def test_bearer_token(client, monkeypatch):
    monkeypatch.setenv("LEADSCORING_API_TOKEN", "s3cret")
    assert client.post("/score", json=LEAD).status_code == 401
    assert client.post("/score", json=LEAD, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/score", json=LEAD, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/health").status_code == 200
    assert client.get("/openapi.json").json()["paths"]["/score"]


class _FlakyCRM(BaseHTTPRequestHandler):
    """Fails each lead's first PATCH with 503 (every third with 429), lead 'bad' always with 500."""

    attempts: Counter = Counter()
    accepted: Counter = Counter()
    auth: set = set()
    lock = threading.Lock()

    def do_PATCH(self):  # noqa: N802 - http.server API
        lead = self.path.rsplit("/", 1)[-1]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            self.attempts[lead] += 1
            first = self.attempts[lead] == 1
            self.auth.add(self.headers.get("Authorization"))
        if lead == "bad":
            code = 500
        elif first:
            code = 429 if hash(lead) % 3 == 0 else 503
        else:
            assert body["lead_id"] == lead and set(body["custom_fields"]) == {
                "predictive_score",
                "score_bucket",
                "recommended_action",
            }
            with self.lock:
                self.accepted[lead] += 1
            code = 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def crm():
    _FlakyCRM.attempts, _FlakyCRM.accepted, _FlakyCRM.auth = Counter(), Counter(), set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyCRM)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_push_retries_and_resends_nothing(crm, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LEADSCORING_CRM_TOKEN", "crm-token-xyz")
    caplog.set_level(logging.DEBUG)
    scores = pd.DataFrame(
        {"id": [str(i) for i in range(40)] + ["bad"], "score": 50, "bucket": "WARM", "recommended_action": "Nurture"}
    )
    path = tmp_path / "scores.csv"
    scores.to_csv(path, index=False)
    first = push_scores(path, crm, retries=3, backoff=0.01, concurrency=4)
    assert (first.sent, first.skipped, first.failed) == (40, 0, 1)
    assert first.failures == {"bad": "HTTP 500"}
    assert set(_FlakyCRM.accepted.values()) == {1} and len(_FlakyCRM.accepted) == 40  # exactly once each
    assert _FlakyCRM.attempts["bad"] == 4 and _FlakyCRM.auth == {"Bearer crm-token-xyz"}
    before = sum(_FlakyCRM.attempts.values())
    second = push_scores(path, crm, retries=0, backoff=0.01)
    assert (second.sent, second.skipped, second.failed) == (0, 40, 1)
    assert sum(_FlakyCRM.attempts.values()) == before + 1  # only the failed lead is tried again
    assert "crm-token-xyz" not in caplog.text
    changed = scores.assign(score=[90] + [50] * 40)
    changed.to_csv(path, index=False)
    third = push_scores(path, crm, retries=2, backoff=0.01)
    assert third.sent == 1 and _FlakyCRM.accepted["0"] == 2  # a changed score is sent again


def test_psi_and_ab_lift():
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.normal(size=5000)
    assert psi(a, rng.normal(size=5000), numeric=True) < 0.02
    assert psi(a, rng.normal(1.0, size=5000), numeric=True) > 0.25
    assert psi(["x"] * 50 + ["y"] * 50, ["x"] * 50 + ["y"] * 50, numeric=False) == pytest.approx(0.0)
    assert psi(["x"] * 50 + ["y"] * 50, ["x"] * 10 + ["z"] * 90, numeric=False) > 0.25
    # 40 equally common levels and a week of 100 leads: chance alone summed to a PSI near 0.7 over
    # the levels; neighbouring levels are merged until each bin expects 20 leads, so no false alert
    levels = [f"L{i}" for i in range(40)]
    reference = rng.choice(levels, 20000)
    noise = [psi(reference, rng.choice(levels, 100), numeric=False) for _ in range(100)]
    assert max(noise) < 0.25 and np.mean(noise) < 0.1
    assert psi(reference, rng.choice(levels[:10], 100), numeric=False) > 1  # a real shift still stands out
    res = ab_lift(100, 1000, 150, 1000)
    assert res["difference"] == pytest.approx(0.05) and res["lift"] == pytest.approx(0.5)
    assert res["lift_low"] < 0.5 < res["lift_high"] and res["lift_low"] > 0 and res["significant"]
    # Newcombe's hybrid score interval, his own example (Statistics in Medicine 1998; 17:873-890): 56/70 - 48/80
    res = ab_lift(48, 80, 56, 70)
    assert (res["difference_low"], res["difference_high"]) == pytest.approx((0.0524, 0.3339), abs=5e-5)
    # small groups: 1 of 50 against 12 of 150 is not significant (Fisher's exact test: p = 0.19); the Wald interval said it was
    small = ab_lift(1, 50, 12, 150)
    assert not small["significant"] and small["difference_low"] < 0 < small["difference_high"]
    assert not ab_lift(0, 30, 5, 270)["significant"]  # Fisher's exact test: p = 1


def test_service_answers_the_same_with_every_shortcut_off(cfg, small_models, client, monkeypatch):
    from leadscoring.serving.fast import FAST_PATHS_ENV

    monkeypatch.setenv(FAST_PATHS_ENV, "0")
    plain = TestClient(create_app(cfg, Scorer.load(cfg, small_models)))
    leads = [LEAD, {**LEAD, "id": 2, "tiempo_en_site_total": 10, "fuente": "TikTok"}]
    fast_batch, plain_batch = client.post("/score/batch", json=leads).json(), plain.post("/score/batch", json=leads).json()
    for a, b in zip(fast_batch, plain_batch, strict=True):
        assert a.pop("probability") == pytest.approx(b.pop("probability"), abs=1e-6)
        at_a, at_b = pd.Timestamp(a.pop("scored_at")), pd.Timestamp(b.pop("scored_at"))
        assert abs((at_a - at_b).total_seconds()) < 60  # two servers, two calls: the same minute or so
        assert a == b
    assert plain.post("/score", json={**LEAD, "visitas_total": -1}).status_code == 422


def test_a_lead_sent_as_the_export_has_it_is_scored(cfg, client):
    """Its creation date and its outcome are read past, as in a file; other unknown fields are
    refused unless data.allow_extra_columns lets a file carry them."""
    import pydantic

    from leadscoring.serving.service import lead_model

    target = cfg.data.target_column
    with_outcome = client.post("/score", json={**LEAD, target: 1})
    assert with_outcome.status_code == 200, with_outcome.text
    assert with_outcome.json()["probability"] == client.post("/score", json=LEAD).json()["probability"]
    dated = cfg.model_copy(update={"data": cfg.data.model_copy(update={"date_column": "Data de criação"})})
    assert lead_model(dated).model_validate({**LEAD, "Data de criação": "05/01/2026"})
    with pytest.raises(pydantic.ValidationError, match="Data de criação"):  # checked as a file's date is
        lead_model(dated).model_validate({**LEAD, "Data de criação": "ontem"})
    with pytest.raises(pydantic.ValidationError, match="colour"):
        lead_model(dated).model_validate({**LEAD, "colour": "red"})
    extra = cfg.model_copy(update={"data": cfg.data.model_copy(update={"allow_extra_columns": True})})
    assert "colour" not in lead_model(extra).model_validate({**LEAD, "colour": "red"}).model_dump()
