"""Values reach the event SQL as query parameters, never pasted into its text: an event name,
a page text, a GA4 parameter key, a visitor key or a file path holding quotes, ``;`` or
``--`` gives the same features as any other value, in batch, through the store and in a
live lookup, and the BigQuery text carries each value as one string literal."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from leadscoring.config import DataConfig, PathsConfig, ProjectConfig
from leadscoring.events.engine import compute_features
from leadscoring.events.live import LiveEvents
from leadscoring.events.store import ingest
from tests.test_events import ga4_event

VISITOR = "v'1; DROP TABLE events; --"
EVENT = "sign'up; -- now"
PAGE = "/o'dd;--"
PARAM = "am'ount; --"
AT = "2026-01-02T00:00:00"

FEATURES = [
    {"name": "signups", "kind": "count", "event": EVENT},
    {"name": "odd_pages", "kind": "count", "page_contains": PAGE},
    {"name": "amount", "kind": "sum", "event": EVENT, "param": PARAM},
    {"name": "to_page_view_s", "kind": "time_between", "from_event": EVENT, "to_event": "page_view"},
]
EXPECTED = {
    VISITOR: {"signups": 2.0, "odd_pages": 1.0, "amount": 12.0, "to_page_view_s": 120.0},
    "nobody": {"signups": 0.0, "odd_pages": 0.0, "amount": 0.0, "to_page_view_s": float("nan")},
}


@pytest.fixture()
def odd(tmp_path):
    folder = tmp_path / "it's; -- exports"
    folder.mkdir()
    events = [
        ga4_event(VISITOR, 0, EVENT, 1, page_location=f"https://x.example{PAGE}/p", **{PARAM: 5.0}),
        ga4_event(VISITOR, 60, EVENT, 1, **{PARAM: 7.0}),
        ga4_event(VISITOR, 120, "page_view", 2, page_location="https://x.example/home"),
        ga4_event("someone else", 30, EVENT, 3, **{PARAM: 100.0}),
    ]
    (folder / "events_20260101.json").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    cfg = ProjectConfig(
        root=tmp_path,
        paths=PathsConfig(raw_data="raw/export.csv"),
        data=DataConfig(id_column="Lead", target_column="Won", columns={"numeric": ["Age"]}),
        events={"path": f"{folder.name}/events_*.json", "lead_key": "Client", "store": "st'ore; --", "features": FEATURES},
    )
    leads = pd.DataFrame({"Lead": ["a", "b"], "Client": [VISITOR, "nobody"], "Age": [1.0, 2.0]})
    return cfg, leads, folder


def expected(leads: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([EXPECTED[v] for v in leads["Client"]], index=leads.index)


def test_odd_values_give_their_features_in_batch(odd):
    cfg, leads, _ = odd
    pd.testing.assert_frame_equal(compute_features(cfg, leads, at=AT), expected(leads))


def test_odd_values_survive_the_store_and_the_live_lookup(odd):
    cfg, leads, folder = odd
    assert ingest(cfg, sorted(folder.iterdir())) == {"2026-01-01": 4}
    live = LiveEvents(cfg, background=False)
    try:
        assert live.rows == 4
        pd.testing.assert_frame_equal(live.features(leads, at=AT), expected(leads))
    finally:
        live.close()


def test_the_bigquery_text_holds_each_value_as_one_literal(odd):
    sqlglot = pytest.importorskip("sqlglot")
    from leadscoring.events.bigquery import bigquery_sql

    cfg, _, _ = odd
    sql = bigquery_sql(cfg.events, "p.d.events_*", "p.d.leads", None, None)
    tree = sqlglot.parse_one(sql, read="bigquery")
    literals = {lit.this for lit in tree.find_all(sqlglot.exp.Literal) if lit.is_string}
    assert {EVENT, PAGE, PARAM, "page_view"} <= literals
    assert "$" not in sql  # no parameter left for the console
