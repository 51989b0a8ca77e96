"""The service refuses what the CLI refuses (blank or boolean ids, booleans and non-finite
numbers, duplicate ids in a batch), checks the token before reading the body, and bounds
the body size and the batch length."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from leadscoring.config import ServiceConfig
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
MAX_BATCH = 5
MAX_BODY_MB = 0.01  # 10,485 bytes
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def client(cfg, small_models):
    limited = cfg.model_copy(update={"service": ServiceConfig(max_batch=MAX_BATCH, max_body_mb=MAX_BODY_MB)})
    return TestClient(create_app(limited, Scorer.load(cfg, small_models)))


def _loc(r):
    return r.json()["detail"][0]["loc"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", ""),
        ("id", "   "),
        ("id", True),
        ("id", False),
        ("id", 1.5),
        ("visitas_total", True),
        ("visitas_total", False),
        ("visitas_total", "inf"),
        ("visitas_total", "Infinity"),
        ("tiempo_en_site_total", "-inf"),
        ("tiempo_en_site_total", "nan"),
    ],
)
def test_single_lead_refusals_name_the_field(client, field, value):
    r = client.post("/score", json={**LEAD, field: value})
    assert r.status_code == 422, r.text
    assert _loc(r) == ["body", field]


@pytest.mark.parametrize("literal", ["Infinity", "-Infinity", "NaN", "1e999"])
def test_non_finite_json_literals_are_refused(client, literal):
    raw = json.dumps({**LEAD, "visitas_total": 0}).replace('"visitas_total": 0', f'"visitas_total": {literal}')
    r = client.post("/score", content=raw, headers=JSON)
    assert r.status_code == 422, r.text
    assert _loc(r) == ["body", "visitas_total"]
    r = client.post("/score/batch", content=f"[{raw}]", headers=JSON)
    assert r.status_code == 422, r.text
    assert _loc(r) == ["body", 0, "visitas_total"]


def test_ids_come_back_byte_for_byte(client):
    assert client.post("/score", json={**LEAD, "id": "00660728"}).json()["lead_id"] == "00660728"
    assert client.post("/score", json={**LEAD, "id": 660728}).json()["lead_id"] == "660728"
    batch = client.post("/score/batch", json=[{**LEAD, "id": "00660728"}, {**LEAD, "id": "0660728"}, LEAD]).json()
    assert [b["lead_id"] for b in batch] == ["00660728", "0660728", "1"]


def test_batch_refusals_name_index_and_field(client):
    r = client.post("/score/batch", json=[LEAD, {**LEAD, "id": 2, "visitas_total": True}])
    assert r.status_code == 422 and _loc(r) == ["body", 1, "visitas_total"]
    r = client.post("/score/batch", json=[LEAD, {**LEAD, "id": " "}])
    assert r.status_code == 422 and _loc(r) == ["body", 1, "id"]


def test_duplicate_ids_in_a_batch_are_422(client):
    r = client.post("/score/batch", json=[{**LEAD, "id": "a"}, {**LEAD, "id": "b"}, {**LEAD, "id": "a"}])
    assert r.status_code == 422
    assert _loc(r) == ["body", 2, "id"] and "'a'" in r.json()["detail"][0]["msg"]
    r = client.post("/score/batch", json=[{**LEAD, "id": 7}, {**LEAD, "id": "7"}])  # the same id once read
    assert r.status_code == 422 and _loc(r) == ["body", 1, "id"]


def test_batch_over_the_limit_is_413(client):
    ok = client.post("/score/batch", json=[{**LEAD, "id": i} for i in range(MAX_BATCH)])
    assert ok.status_code == 200 and len(ok.json()) == MAX_BATCH
    r = client.post("/score/batch", json=[{**LEAD, "id": i} for i in range(MAX_BATCH + 1)])
    assert r.status_code == 413 and str(MAX_BATCH) in r.json()["detail"]


def test_body_over_the_limit_is_413(client):
    big = json.dumps([{**LEAD, "id": i, "origen": "x" * 3000} for i in range(4)]).encode()
    assert len(big) > MAX_BODY_MB * 1024 * 1024
    assert client.post("/score/batch", content=big, headers=JSON).status_code == 413  # Content-Length
    read = []

    def chunks():  # no Content-Length: sent chunked, cut at the limit
        for i in range(0, len(big), 1000):
            read.append(i)
            yield big[i : i + 1000]

    assert client.post("/score/batch", content=chunks(), headers=JSON).status_code == 413
    assert client.post("/score", content=json.dumps({**LEAD, "origen": "x" * 20_000}), headers=JSON).status_code == 413


def test_token_is_checked_before_the_body(client, monkeypatch):
    monkeypatch.setenv("LEADSCORING_API_TOKEN", "s3cret")
    for path in ("/score", "/score/batch"):
        assert client.post(path, content=b"{not json", headers=JSON).status_code == 401
        assert client.post(path, content=b"{not json", headers={**JSON, "Authorization": "Basic s3cret"}).status_code == 401
        consumed: list[bool] = []

        def body(seen: list[bool] = consumed):
            seen.append(True)
            yield b"[]"

        assert client.post(path, content=body(), headers=JSON).status_code == 401
        assert not consumed  # refused without reading the body
        r = client.post(path, content=b"{not json", headers={**JSON, "Authorization": "Bearer s3cret"})
        assert r.status_code == 422  # authenticated: now the body is read and refused
    for scheme in ("bearer", "BEARER", "Bearer"):
        auth = {"Authorization": f"{scheme} s3cret"}
        assert client.post("/score", json=LEAD, headers=auth).status_code == 200
        assert client.post("/score/batch", json=[LEAD], headers=auth).status_code == 200
    assert client.post("/score/batch", json=[LEAD], headers={"Authorization": "bearer wrong"}).status_code == 401


def test_openapi_describes_both_bodies(client):
    paths = client.get("/openapi.json").json()["paths"]
    single = paths["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    batch = paths["/score/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "id" in single["properties"] and single["required"] == ["id"]
    assert batch["type"] == "array" and batch["maxItems"] == MAX_BATCH and batch["items"] == single
    assert {"401", "413", "422"} <= set(paths["/score/batch"]["post"]["responses"])


@pytest.mark.parametrize("lead_id", [[1], [], {}, {"a": 1}, ["x", "y"]])
def test_an_id_is_a_string_or_an_integer_not_a_list_or_an_object(client, lead_id):
    r = client.post("/score", json={**LEAD, "id": lead_id})
    assert r.status_code == 422, r.text
    assert _loc(r) == ["body", "id"]
    r = client.post("/score/batch", json=[LEAD, {**LEAD, "id": lead_id}])
    assert r.status_code == 422, r.text
    assert _loc(r) == ["body", 1, "id"]


def test_a_huge_invalid_body_gets_a_small_answer(client):
    nul = b"\x00" * 10_000  # under the body limit; echoed whole, its JSON would be 60 kB
    for path in ("/score", "/score/batch"):
        r = client.post(path, content=nul, headers=JSON)
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
        assert len(r.content) < 2_000
    r = client.post("/score", json={**LEAD, "origen": "x" * 9_000, "visitas_total": "9" * 400 + "x"})
    assert r.status_code == 422 and _loc(r) == ["body", "visitas_total"]
    assert len(r.content) < 2_000 and "401 characters" in r.json()["detail"][0]["input"]
    r = client.post("/score", json={**LEAD, "z" * 9_000: 1})  # an unknown field with a long name: still named
    assert r.status_code == 422 and _loc(r)[1].startswith("zzz") and len(r.content) < 2_000


def test_at_most_ten_errors_are_reported(client):
    r = client.post("/score", json={**LEAD, **{f"unknown_{i}": "x" * 90 for i in range(60)}})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert len(detail) == 11 and [d["loc"][1] for d in detail[:10]] == [f"unknown_{i}" for i in range(10)]
    assert detail[10]["type"] == "too_many_errors" and detail[10]["msg"] == "50 more errors not shown"
    assert len(r.content) < 4_000
