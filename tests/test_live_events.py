"""Live behavioural features in the scoring service (issue "Behavioural events -> lead
features", item 5): a lead sent with its visitor key and no behaviour is scored on its
visitor's features as of the scoring time, looked up in the event store loaded in memory
(:class:`LiveEvents`), with the numbers of batch scoring; the store's changes are seen."""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from leadscoring.config import ProjectConfig
from leadscoring.events.engine import compute_features, join_features, store_files
from leadscoring.events.live import LiveEvents
from leadscoring.events.store import ingest
from leadscoring.serving.outputs import json_records
from leadscoring.serving.scorer import Scorer
from leadscoring.serving.service import create_app, lead_model
from tests.small_models import save_scoring_model
from tests.test_events import DAY, EVENTS, LEADS, config, ga4_event
from tests.test_service import LEAD

FEATURES = [
    {"name": "views", "kind": "count", "event": "page_view"},
    {"name": "views_7d", "kind": "count", "event": "page_view", "days": 7},
    {"name": "sessions", "kind": "sessions"},
    {"name": "active_days", "kind": "active_days"},
    {"name": "recency_d", "kind": "days_since_last"},
    {"name": "engaged_s", "kind": "engagement_seconds"},
    {"name": "avg_amount", "kind": "avg", "event": "simulator", "param": "amount"},
    {"name": "decayed", "kind": "decayed", "half_life_days": 7},
]
KEY = "client_id"
AT = "2026-02-01T09:30:00Z"


def _write_day(path, events: list[dict]) -> None:
    """A GA4 daily export file: its events carry the day of its name as event_date, as GA4
    writes them (ingest refuses a file of another day's events)."""
    day = path.name.removeprefix("events_")[:8]
    path.write_text("\n".join(json.dumps({**e, "event_date": day}) for e in events) + "\n")


def _events_for(visitors: list[str], converted: np.ndarray, seed: int = 0) -> dict[str, list[dict]]:
    """GA4 events per day (20 days of January 2026): converted leads' visitors are busier."""
    rng = np.random.default_rng(seed)
    days: dict[str, list[dict]] = {}
    for visitor, won in zip(visitors, converted, strict=True):
        for _ in range(rng.poisson(1 + 5 * won)):
            day = int(rng.integers(0, 20))
            name = str(rng.choice(["page_view", "page_view", "simulator", "file_download"]))
            params = {"amount": float(rng.integers(10, 90) * 100)} if name == "simulator" else {}
            event = ga4_event(visitor, day * DAY + float(rng.integers(0, 80_000)), name, day, **params)
            days.setdefault(f"202601{day + 1:02d}", []).append(event)
    return days


@pytest.fixture(scope="module")
def project(cfg, sample, tmp_path_factory):
    """A project with events: the store holds the sample leads' visitors' GA4 events, and a
    model trained on the leads with their behavioural features (as of mid-January)."""
    root = tmp_path_factory.mktemp("live")
    target = cfg.data.target_column
    leads = sample.assign(**{KEY: [f"c{i}" for i in range(len(sample))]})
    (root / "ga4").mkdir()
    for day, events in _events_for(list(leads[KEY]), leads[target].to_numpy()).items():
        _write_day(root / "ga4" / f"events_{day}.json", events)
    conf = cfg.model_dump()
    conf.update(
        root=root,
        paths={**conf["paths"], "score_history": str(root / "history.parquet")},
        events={"path": "ga4/events_*.json", "lead_key": KEY, "features": FEATURES},
    )
    ev_cfg = ProjectConfig.model_validate(conf)
    ingest(ev_cfg, sorted((root / "ga4").glob("*.json")))
    X = add_features(ev_cfg, leads.drop(columns=target), at="2026-01-15")
    y = leads[target]
    save_scoring_model(ev_cfg, X, y, root / "models", n_estimators=40)
    return ev_cfg, root / "models", leads


def add_features(cfg: ProjectConfig, leads: pd.DataFrame, at: str) -> pd.DataFrame:
    """Batch scoring's features: compute_features over the store's files."""
    return join_features(leads, compute_features(cfg, leads, at=at, files=store_files(cfg)))


@pytest.fixture(scope="module")
def service(project):
    ev_cfg, models, _ = project
    scorer = Scorer.load(ev_cfg, models)
    scorer.live_events = LiveEvents(ev_cfg, background=False)
    return TestClient(create_app(ev_cfg, scorer)), scorer


def _requests() -> list[dict]:
    """Leads as the CRM sends them: visitors with events, an unknown visitor, no visitor key."""
    visitors = ["c0", "c1", "c2", "c3", "c5", "nobody", None]
    return [{**LEAD, "id": f"L{i}", "tiempo_en_site_total": 300 * i, **({KEY: v} if v else {})} for i, v in enumerate(visitors)]


def _batch_scores(ev_cfg: ProjectConfig, models, requests: list[dict], at: str) -> list[dict]:
    """Batch scoring of the same leads: features by compute_features as of ``at``, then
    Scorer.score_columns (no live lookup)."""
    Lead = lead_model(ev_cfg)
    rows = pd.DataFrame([Lead.model_validate(r).model_dump() for r in requests])
    numeric = [c for c in ev_cfg.model_data.columns.numeric if c in rows.columns]
    rows[numeric] = rows[numeric].astype(float)
    X = add_features(ev_cfg, rows.drop(columns=ev_cfg.event_columns), at=at)
    out = Scorer.load(ev_cfg, models).score_columns(X, scored_at=at)
    return json_records(out, rename={ev_cfg.data.id_column: "lead_id"})


def test_the_service_scores_a_visitor_as_batch_scoring_does(project, service, monkeypatch):
    ev_cfg, models, leads = project
    client, scorer = service
    looked_up = []
    lookup = scorer.live_events.features
    monkeypatch.setattr(scorer.live_events, "features", lambda frame, at: looked_up.append(len(frame)) or lookup(frame, at))
    requests = _requests()
    singles = [client.post("/score", json=r) for r in requests]
    assert all(r.status_code == 200 for r in singles), singles[0].text
    for r, request in zip(singles, requests, strict=True):
        body = r.json()  # features as of the answer's scored_at (seconds): batch scoring at that time agrees
        assert body == _batch_scores(ev_cfg, models, [request], body["scored_at"])[0]
    batch = client.post("/score/batch", json=requests).json()
    assert batch == _batch_scores(ev_cfg, models, requests, batch[0]["scored_at"])
    assert looked_up == [1] * len(requests) + [len(requests)]  # every score looked its visitor up, in memory
    busy = leads[KEY][leads[ev_cfg.data.target_column] == 1].iloc[0]
    same = [client.post("/score", json={**LEAD, KEY: v}).json()["probability"] for v in (busy, "nobody")]
    assert same[0] != same[1]  # the same lead, with and without its visitor's behaviour


def test_fixed_time_lookups_equal_compute_features(project, service):
    ev_cfg, _, leads = project
    _, scorer = service
    frame = pd.concat([leads, pd.DataFrame({KEY: ["nobody", None, "c1"]})], ignore_index=True)
    for at in (AT, "2026-01-08T00:00:00Z"):
        live = scorer.live_events.features(frame, at=at)
        pd.testing.assert_frame_equal(live, compute_features(ev_cfg, frame, at=at, files=store_files(ev_cfg)))
    nobody = scorer.live_events.features(frame.tail(3), at=AT)
    assert nobody["views"].tolist()[:2] == [0, 0] and nobody["recency_d"].isna().tolist() == [True, True, False]
    # The scorer (live) and batch scoring at one fixed time: the same scores.
    X = frame.head(50).drop(columns=ev_cfg.data.target_column)
    live_scores = scorer.score_columns(X, scored_at=AT, reasons=False)
    batch = Scorer.load(ev_cfg, scorer.models_dir).score_columns(add_features(ev_cfg, X, AT), scored_at=AT, reasons=False)
    np.testing.assert_array_equal(live_scores["probability"], batch["probability"])


def test_a_lead_sending_its_behaviour_is_scored_on_it(project, service):
    ev_cfg, models, _ = project
    client, _ = service
    sent = {**LEAD, "id": "S1", KEY: "c0", "views": 40, "sessions": 9}
    both = client.post("/score/batch", json=[sent, {**LEAD, "id": "S2", KEY: "c0"}]).json()
    at = both[0]["scored_at"]
    assert both[1] == _batch_scores(ev_cfg, models, [{**LEAD, "id": "S2", KEY: "c0"}], at)[0]
    Lead = lead_model(ev_cfg)
    rows = pd.DataFrame([Lead.model_validate(sent).model_dump()])
    rows[ev_cfg.model_data.columns.numeric] = rows[ev_cfg.model_data.columns.numeric].astype(float)
    own = json_records(Scorer.load(ev_cfg, models).score_columns(rows, scored_at=at), rename={"id": "lead_id"})
    assert both[0] == own[0]  # its own (partial) behaviour, nothing looked up


@pytest.fixture()
def small(tmp_path):
    """The hand-checked events of tests/test_events.py in a store of two days."""
    cfg = config(tmp_path, "ga4/events_*.json", features=FEATURES)
    (tmp_path / "ga4").mkdir()
    for day, events in (("20260101", EVENTS[:5]), ("20260110", EVENTS[5:])):
        _write_day(tmp_path / "ga4" / f"events_{day}.json", events)
    ingest(cfg, sorted((tmp_path / "ga4").glob("*.json")))
    return cfg


def _reingest_day_10(cfg: ProjectConfig, extra: list[dict]) -> None:
    path = cfg.root / "fix" / "events_20260110.json"
    path.parent.mkdir(exist_ok=True)
    _write_day(path, [*EVENTS[5:], *extra])
    ingest(cfg, [path])


def test_a_replaced_day_is_seen_after_the_refresh(small):
    live = LiveEvents(small, background=False, check_seconds=0)
    slow = LiveEvents(small, background=False, check_seconds=3600)
    before = live.features(LEADS, at=AT)
    assert before["views"].tolist() == [2, 0, 0] and live.rows == 7
    _reingest_day_10(small, [ga4_event("v1", 9 * DAY + 30, "page_view", 3), ga4_event("v9", 9 * DAY, "page_view", 1)])
    after = live.features(LEADS, at=AT)  # checked on this lookup (check_seconds=0): reloaded
    assert after["views"].tolist() == [3, 0, 0] and live.rows == 9
    pd.testing.assert_frame_equal(after, compute_features(small, LEADS, at=AT, files=store_files(small)))
    assert slow.features(LEADS, at=AT)["views"].tolist() == [2, 0, 0]  # not checked again within the hour
    assert slow.refresh() is True and slow.features(LEADS, at=AT)["views"].tolist() == [3, 0, 0]
    assert slow.refresh() is False  # nothing changed since


def test_the_service_reloads_in_the_background(small):
    live = LiveEvents(small, check_seconds=0)  # background reloads, as create_app makes it
    assert live.features(LEADS, at=AT)["views"].tolist() == [2, 0, 0]
    (small.root / "more").mkdir()
    new_day = small.root / "more" / "events_20260115.json"
    _write_day(new_day, [ga4_event("v2", 14 * DAY, "page_view", 5)])
    ingest(small, [new_day])
    live.features(LEADS, at=AT)  # sees the change, starts the reload, answers from the previous events
    live._loader.join(timeout=30)
    assert live.features(LEADS, at=AT)["views"].tolist() == [2, 1, 0] and live.stats()["files"] == 3


def test_concurrent_lookups_agree(small):
    live = LiveEvents(small, background=False)
    want = live.features(LEADS, at=AT)
    results: list[pd.DataFrame] = []

    def look() -> None:
        for i in range(15):
            results.append(live.features(LEADS.iloc[[i % 3]], at=AT))

    threads = [threading.Thread(target=look) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 60
    for r in results:
        pd.testing.assert_frame_equal(r, want.loc[r.index])


def test_an_empty_store_gives_no_events_until_one_is_ingested(tmp_path):
    cfg = config(tmp_path, "ga4/none_*.json", features=FEATURES)
    live = LiveEvents(cfg, background=False, check_seconds=0)
    assert live.rows == 0 and live.features(LEADS, at=AT)["views"].tolist() == [0, 0, 0]
    day = tmp_path / "events_20260101.json"
    day.write_text("\n".join(json.dumps(e) for e in EVENTS[:5]) + "\n")
    ingest(cfg, [day])
    assert live.features(LEADS, at=AT)["views"].tolist() == [1, 0, 0]


def test_a_flat_log_without_a_store_then_with_one(tmp_path):
    log = pd.DataFrame(
        {
            "visitor": ["v1", "v1", "v2", "v1"],
            "activity": ["page_view", "simulator", "page_view", "page_view"],
            "timestamp": ["2026-01-01 10:00", "2026-01-02 11:00", "2026-01-03 12:00", "2026-01-09 08:00"],
            "session": ["s1", "s2", "s3", "s4"],
            "amount": ["", "2500", "", ""],
        }
    )
    log.to_csv(tmp_path / "activity.csv", index=False)
    cfg = config(tmp_path, "activity.csv", format="flat", key="visitor", session_column="session", features=FEATURES)
    live = LiveEvents(cfg, background=False, check_seconds=0)  # no store yet: events.path
    want = compute_features(cfg, LEADS, at=AT)
    pd.testing.assert_frame_equal(live.features(LEADS, at=AT), want)
    assert want.loc[0, "views"] == 2 and want.loc[0, "avg_amount"] == 2500 and want.loc[0, "sessions"] == 3
    ingest(cfg, [tmp_path / "activity.csv"])
    pd.testing.assert_frame_equal(live.features(LEADS, at=AT), want)  # the store now, the same events
    assert live.stats()["files"] == 4  # one file per day


def test_a_file_of_many_leads_is_scored_with_events_configured(project, tmp_path):
    """The check for fields a file lacks (run on a file's first leads, before the events
    are read) does not look for the behavioural features, which no file carries: a file of
    50 leads or more was refused with a KeyError naming the first event feature."""
    from leadscoring.serving.batch import score_file

    ev_cfg, models, leads = project
    new = leads.drop(columns=ev_cfg.data.target_column).head(60)
    assert not set(ev_cfg.event_columns) & set(new.columns)
    new.to_csv(tmp_path / "new.csv", index=False, sep=ev_cfg.data.separator)
    done = score_file(ev_cfg, tmp_path / "new.csv", tmp_path / "scores.csv", models_dir=models, scored_at=AT)
    assert done["leads"] == 60 and done["gaps"] == []
    scores = pd.read_csv(tmp_path / "scores.csv", sep=None, engine="python")
    X = add_features(ev_cfg, new, AT)
    own = Scorer.load(ev_cfg, models).score_columns(X, scored_at=AT, reasons=False)
    np.testing.assert_allclose(scores["probability"], own["probability"], atol=1e-6)
