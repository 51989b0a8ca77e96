"""Hot reload of the service's models: a promotion (``retrain``, ``rollback``, any
``replace_model_set``) is picked up without a restart, a set half-way through its promotion is
never loaded, a corrupt or incompatible set is refused once and the old one keeps serving.

One test runs a real uvicorn server on loopback with a client scoring continuously; the others
drive the reloader's check by hand (no waiting on a clock)."""

from __future__ import annotations

import json
import logging
import math
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from leadscoring import artifacts
from leadscoring.artifacts import PROMOTION_FILE, SCORE_MODEL, read_manifest, read_promotion, replace_model_set
from leadscoring.config import ProjectConfig, load_config
from leadscoring.loop import retrain as retrain_module
from leadscoring.loop.retrain import retrain
from leadscoring.loop.versions import list_versions, rollback
from leadscoring.serving import service as service_module
from leadscoring.serving.reload import ModelReloader
from leadscoring.serving.service import create_app, lead_model

from .conftest import write_project
from .live_service import served

WAIT = 30.0  # longest wait for anything here (a bound, not an expectation)
SWITCH = 5.0  # the version must switch within this many seconds of the promotion record


@pytest.fixture()
def project(tmp_path, small_models, cfg, leads, sample) -> tuple[ProjectConfig, Path, list[dict]]:
    """A project whose model set (the small models) was put in place by a promotion, 400 new
    outcomes as full lead rows, and a few leads as request bodies."""
    pcfg = load_config(write_project(tmp_path, service__reload_seconds=0.2))
    models = pcfg.path("models_dir")
    replace_model_set(models, lambda _: shutil.copytree(small_models, models, dirs_exist_ok=True))
    d = cfg.data
    new = leads[~leads[d.id_column].isin(sample[d.id_column])].head(400)
    outcomes = tmp_path / "outcomes.csv"
    new.to_csv(outcomes, sep=d.separator, index=False)
    fields = set(lead_model(pcfg).model_fields)
    bodies = [
        {k: v for k, v in row.items() if k in fields and not (isinstance(v, float) and math.isnan(v))}
        for row in sample.head(4).to_dict(orient="records")
    ]
    return pcfg, outcomes, bodies


def _version(models: Path) -> str:
    return read_manifest(models / SCORE_MODEL)["sha256"][:12]


class _Client(threading.Thread):
    """Scores continuously (one lead, then a batch, in turn) until stopped; keeps every
    answer's (time, status, versions in the body, X-Model-Version header)."""

    def __init__(self, url: str, bodies: list[dict]) -> None:
        super().__init__(daemon=True)
        self.url, self.bodies = url, bodies
        self.answers: list[tuple[float, int, set[str], str | None]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=WAIT) as http:
            n = 0
            while not self.stop.is_set():
                one = n % 2 == 0
                r = http.post("/score", json=self.bodies[0]) if one else http.post("/score/batch", json=self.bodies)
                body = r.json() if r.is_success else None
                versions = set() if body is None else {body["model_version"]} if one else {b["model_version"] for b in body}
                self.answers.append((time.time(), r.status_code, versions, r.headers.get("x-model-version")))
                n += 1

    def seen(self, version: str) -> bool:
        return any(version in versions for _, _, versions, _ in self.answers)


def _wait_for(what, client: _Client | None = None) -> float:
    """Poll ``what()`` until true (at most WAIT seconds); the time it became true."""
    deadline = time.monotonic() + WAIT
    while not what():
        assert time.monotonic() < deadline, "timed out"
        assert client is None or client.is_alive(), "the client stopped"
        time.sleep(0.02)
    return time.time()


def _damage(path: Path) -> None:
    """Flip the last byte of ``path`` (its manifest's SHA-256 no longer matches)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_promotion_is_served_without_a_restart_while_a_client_scores(project):
    """Real HTTP on loopback: a client scores continuously while a retrain promotes, then a
    corrupt set is promoted, then a rollback: zero non-2xx answers, the version switches
    within seconds of each good promotion, the corrupt set is refused and /health says why."""
    pcfg, outcomes, bodies = project
    models = pcfg.path("models_dir")
    first = _version(models)
    with served(create_app(pcfg), pcfg) as url, httpx.Client(base_url=url, timeout=WAIT) as http:
        client = _Client(url, bodies)
        client.start()
        _wait_for(lambda: len(client.answers) >= 20, client)

        result = retrain(pcfg, outcomes, tolerance=1.0)  # tolerance 1: always promote
        assert result.promoted
        second = _version(models)
        promoted_at = (models / PROMOTION_FILE).stat().st_mtime
        switched = _wait_for(lambda: client.seen(second), client)
        assert switched - promoted_at < SWITCH
        health = http.get("/health").json()
        assert health["model_version"] == second and health["last_refused"] is None

        # a corrupt set: the first set put back by a promotion, its model file damaged
        (archived,) = list_versions(pcfg)

        def corrupt(_archived: Path | None) -> None:
            for f in archived.iterdir():
                if f.suffix in {".pkl", ".json"} and f.name != "model_set.json":
                    shutil.copy2(f, models / f.name)
            _damage(models / SCORE_MODEL)

        replace_model_set(models, corrupt)
        refused = _wait_for(lambda: http.get("/health").json()["last_refused"] is not None, client)
        health = http.get("/health").json()
        assert health["model_version"] == second
        assert health["last_refused"]["version"] == first and "SHA-256" in health["last_refused"]["reason"]
        _wait_for(lambda: client.answers[-1][0] > refused + 0.5, client)  # answers after the refusal…
        assert not client.seen(first) or max(t for t, _, v, _ in client.answers if first in v) < switched  # …not the corrupt set

        # a later good set: the first set restored by rollback (verified) is picked up
        rollback(pcfg, version=archived.name)
        restored_at = (models / PROMOTION_FILE).stat().st_mtime
        back = _wait_for(lambda: client.answers[-1][2] == {first}, client)
        assert back - restored_at < SWITCH
        client.stop.set()
        client.join(WAIT)

    statuses = [status for _, status, _, _ in client.answers]
    assert statuses and all(200 <= s < 300 for s in statuses), [s for s in statuses if not 200 <= s < 300][:5]
    assert all(header in versions for _, _, versions, header in client.answers if versions)  # header = the set that scored
    order = [v for _, _, versions, _ in client.answers for v in sorted(versions)]
    assert order[0] == first and order[-1] == first and second in order
    changes = [b for a, b in zip(order, order[1:], strict=False) if a != b]
    assert changes == [second, first]  # one client in sequence: each switch happens once, never back and forth
    print(  # the timings, for the report (pytest -s)
        f"answers {len(statuses)}, switch to retrained {switched - promoted_at:.2f} s, "
        f"back after rollback {back - restored_at:.2f} s"
    )


def _app(pcfg: ProjectConfig) -> tuple[TestClient, ModelReloader]:
    """The app with its watcher off (TestClient without lifespan): the test calls check()."""
    app = create_app(pcfg)
    return TestClient(app), app.state.reloader


def test_a_set_half_way_through_its_promotion_is_never_loaded(project, monkeypatch):
    """A check after each file a retrain or a rollback writes never loads a partial set (nor
    refuses one); the set is loaded once its promotion is recorded."""
    pcfg, outcomes, bodies = project
    models = pcfg.path("models_dir")
    http, reloader = _app(pcfg)
    first = _version(models)
    seen = []

    def checking(write):
        def write_then_check(*args, **kwargs):
            out = write(*args, **kwargs)
            seen.append((reloader.check(), reloader.current.version))  # a check mid-way
            return out

        return write_then_check

    monkeypatch.setattr(retrain_module, "save_model", checking(retrain_module.save_model))
    assert retrain(pcfg, outcomes, tolerance=1.0).promoted  # writes the segment model, then the scoring model
    assert seen == [(False, first)] * 2
    assert reloader.check() is True  # the record, written last, names the complete set
    second = _version(models)
    r = http.post("/score", json=bodies[0])
    assert r.json()["model_version"] == second and r.headers["x-model-version"] == second
    batch = http.post("/score/batch", json=bodies)
    assert {b["model_version"] for b in batch.json()} == {second} and batch.headers["x-model-version"] == second
    health = http.get("/health").json()
    assert health["model_version"] == second and health["reload_seconds"] == 0.2
    bad = http.post("/score", json={**bodies[0], "not_a_field": 1})
    assert bad.status_code == 422 and bad.headers["x-model-version"] == second  # errors name the version too
    assert reloader.check() is False  # nothing new

    seen.clear()
    monkeypatch.setattr(artifacts, "_copy_atomic", checking(artifacts._copy_atomic))
    rollback(pcfg)  # copies the scoring model, its manifest, the segment model, its manifest
    assert len(seen) >= 4 and seen == [(False, second)] * len(seen)
    assert reloader.refused is None  # waiting for the promotion record is not a refusal
    assert reloader.check() is True and reloader.current.version == first


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (lambda pkl: _damage(pkl), "SHA-256"),
        (
            lambda pkl: pkl.with_suffix(".json").write_text(
                json.dumps({**read_manifest(pkl), "versions": {"scikit-learn": "0.1.0"}})
            ),
            "was made with scikit-learn 0.1.0",
        ),
    ],
    ids=["bad-hash", "other-library-version"],
)
def test_a_corrupt_or_incompatible_set_is_refused_once_and_a_later_good_one_is_loaded(project, monkeypatch, caplog, spoil, reason):
    pcfg, outcomes, bodies = project
    models = pcfg.path("models_dir")
    http, reloader = _app(pcfg)
    first = _version(models)
    good = models.parent / "good"
    real_save = retrain_module.save_model

    def save_then_spoil(obj, path, **info):
        manifest = real_save(obj, path, **info)
        if Path(path).name == SCORE_MODEL:
            good.mkdir()
            for f in (Path(path), Path(path).with_suffix(".json")):
                shutil.copy2(f, good / f.name)
            spoil(Path(path))
        return manifest

    monkeypatch.setattr(retrain_module, "save_model", save_then_spoil)
    assert retrain(pcfg, outcomes, tolerance=1.0).promoted
    second = read_promotion(models)["models"][SCORE_MODEL][:12]
    caplog.set_level(logging.INFO)

    assert reloader.check() is False
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.WARNING
    line = refusals[0].getMessage()
    assert second in line and first in line and reason in line and "\n" not in line
    health = http.get("/health").json()
    assert health["model_version"] == first
    assert health["last_refused"]["version"] == second and reason in health["last_refused"]["reason"]
    assert http.post("/score", json=bodies[0]).json()["model_version"] == first

    for _ in range(3):  # the same files: not tried again
        assert reloader.check() is False
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1

    # the good files put back by a promotion: loaded
    replace_model_set(models, lambda _: [shutil.copy2(f, models / f.name) for f in good.iterdir()])
    assert reloader.check() is True
    health = http.get("/health").json()
    assert health["model_version"] == second and health["last_refused"]["version"] == second  # the last refusal stays shown
    assert http.post("/score", json=bodies[0]).json()["model_version"] == second


def test_a_set_failing_its_smoke_prediction_is_refused(project, monkeypatch):
    pcfg, outcomes, bodies = project
    models = pcfg.path("models_dir")
    http, reloader = _app(pcfg)
    first = _version(models)
    assert retrain(pcfg, outcomes, tolerance=1.0).promoted

    def fails(served, lead):
        raise KeyError("a column the model needs")

    monkeypatch.setattr(service_module, "smoke_test", fails)
    assert reloader.check() is False
    assert reloader.refused.reason.startswith("smoke prediction failed: KeyError")
    assert http.post("/score", json=bodies[0]).json()["model_version"] == first


def test_model_files_that_are_not_the_promoted_ones_are_waited_for_not_refused(project, caplog):
    """Files copied by hand over a promoted set (no promotion): a restarted service serves the
    files, and neither loads nor refuses the record's set, which is no longer on disk."""
    pcfg, outcomes, bodies = project
    models = pcfg.path("models_dir")
    first = _version(models)
    assert retrain(pcfg, outcomes, tolerance=1.0).promoted  # the record names the retrained set
    (archived,) = list_versions(pcfg)
    for f in archived.iterdir():
        if f.suffix in {".pkl", ".json"} and f.name != "model_set.json":
            shutil.copy2(f, models / f.name)  # by hand
    http, reloader = _app(pcfg)
    caplog.clear()
    assert reloader.check() is False and reloader.refused is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert http.post("/score", json=bodies[0]).json()["model_version"] == first
