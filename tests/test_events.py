"""Behavioural features from events, point in time (issue "Behavioural events -> lead
features"): GA4 nested export files and a flat activity log, computed by DuckDB."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from leadscoring.config import DataConfig, PathsConfig, ProjectConfig
from leadscoring.errors import LeadDataError
from leadscoring.events.engine import add_event_features, compute_features

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds

FEATURES = [
    {"name": "views", "kind": "count", "event": "page_view"},
    {"name": "downloads", "kind": "count", "event": "file_download"},
    {"name": "sessions", "kind": "sessions"},
    {"name": "engaged_s", "kind": "engagement_seconds"},
    {"name": "recency_d", "kind": "days_since_last"},
    {"name": "tenure_d", "kind": "days_since_first"},
    {"name": "active_days", "kind": "active_days"},
    {"name": "views_7d", "kind": "count", "event": "page_view", "days": 7},
    {"name": "avg_amount", "kind": "avg", "event": "simulator", "param": "amount"},
    {"name": "max_amount", "kind": "max", "event": "simulator", "param": "amount"},
    {"name": "google_share", "kind": "share", "source": "google"},
    {"name": "hesitation_s", "kind": "time_between", "from_event": "view_rates", "to_event": "generate_lead"},
    {"name": "decayed", "kind": "decayed", "half_life_days": 1},
    {"name": "rates_pages", "kind": "count", "page_contains": "/rates"},
]


def ga4_event(visitor: str, seconds: float, name: str, session: int, **params: object) -> dict:
    values = [
        {"key": "ga_session_id", "value": {"int_value": session}},
        {"key": "engagement_time_msec", "value": {"int_value": 2000}},
    ]
    for k, v in params.items():
        kind = "string_value" if isinstance(v, str) else "double_value"
        values.append({"key": k, "value": {kind: v}})
    return {
        "event_date": "20260101",
        "event_timestamp": T0 + int(seconds * 1e6),
        "event_name": name,
        "event_params": values,
        "user_pseudo_id": visitor,
        "user_id": None,
        "device": {"category": "desktop"},
        "geo": {"country": "ES"},
        "traffic_source": {"name": "(organic)", "medium": "organic", "source": "google" if session % 2 else "bing"},
    }


DAY = 86_400.0
EVENTS = [
    ga4_event("v1", 0, "page_view", 1, page_location="https://x.example/rates"),
    ga4_event("v1", 60, "view_rates", 1),
    ga4_event("v1", 90, "simulator", 1, amount=1000.0),
    ga4_event("v1", 150, "generate_lead", 1),
    ga4_event("v1", 2 * DAY, "simulator", 2, amount=3000.0),
    ga4_event("v1", 9 * DAY, "page_view", 3, page_location="https://x.example/home"),
    ga4_event("v2", 3 * DAY, "file_download", 4),
]


def config(tmp_path, path: str, **events: object) -> ProjectConfig:
    data = DataConfig(id_column="Lead", target_column="Won", date_column="Created", columns={"numeric": ["Age"]})
    return ProjectConfig(
        root=tmp_path,
        paths=PathsConfig(raw_data="raw/export.csv"),
        data=data,
        events={"path": path, "lead_key": "Client", "features": FEATURES, **events},
    )


@pytest.fixture()
def ga4(tmp_path):
    folder = tmp_path / "ga4"
    folder.mkdir()
    (folder / "events_20260101.json").write_text("\n".join(json.dumps(e) for e in EVENTS[:5]) + "\n")
    (folder / "events_20260110.json").write_text("\n".join(json.dumps(e) for e in EVENTS[5:]) + "\n")
    return config(tmp_path, "ga4/events_*.json")


LEADS = pd.DataFrame(
    {
        "Lead": ["a", "b", "c"],
        "Client": ["v1", "v2", "nobody"],
        "Created": ["2026-01-10 12:00", "2026-01-05", "2026-01-05"],
        "Age": [30.0, 40.0, 50.0],
    }
)


def test_ga4_features_by_hand(ga4):
    f = compute_features(ga4, LEADS).round(6)
    a = f.iloc[0]
    assert a["views"] == 2 and a["downloads"] == 0 and a["sessions"] == 3 and a["active_days"] == 3
    assert a["engaged_s"] == 12.0  # 6 events x 2 s
    assert a["recency_d"] == 0.5 and a["tenure_d"] == 9.5  # last at day 9, first at day 0; cut-off day 9.5
    assert a["views_7d"] == 1  # the day-0 view is older than 7 days
    assert a["avg_amount"] == 2000.0 and a["max_amount"] == 3000.0
    assert a["google_share"] == pytest.approx(5 / 6, abs=1e-6)  # 5 of 6 events in sessions 1 and 3 (google)
    assert a["hesitation_s"] == 90.0  # rates page viewed at 60 s, lead generated at 150 s
    assert a["rates_pages"] == 1
    ages = [9.5 - s / DAY for s in (0, 60, 90, 150, 2 * DAY, 9 * DAY)]
    assert a["decayed"] == pytest.approx(sum(0.5**age for age in ages), rel=1e-6)  # half-life one day
    b, c = f.iloc[1], f.iloc[2]
    assert b["downloads"] == 1 and b["views"] == 0 and b["recency_d"] == 1.0
    assert c["views"] == 0 and c["sessions"] == 0 and np.isnan(c["recency_d"])  # no events: zero counts, no recency


def test_an_event_after_the_cut_off_changes_nothing(ga4, tmp_path):
    before = compute_features(ga4, LEADS)
    late = [
        ga4_event("v1", 9.5 * DAY + 1, "page_view", 9, page_location="/rates"),  # 1 s after lead a's cut-off
        ga4_event("v2", 4 * DAY, "simulator", 9, amount=99.0),
    ]  # after lead b's cut-off (day 4)
    (tmp_path / "ga4" / "events_20260111.json").write_text("\n".join(json.dumps(e) for e in late) + "\n")
    pd.testing.assert_frame_equal(compute_features(ga4, LEADS), before)
    scored_now = compute_features(ga4, LEADS, at="2026-02-01T00:00:00Z")  # scoring later sees them
    assert scored_now.iloc[0]["views"] == 3 and scored_now.iloc[1]["max_amount"] == 99.0


def test_parquet_and_flat_sources_give_the_same_features(ga4, tmp_path):
    flat = pd.DataFrame(
        {
            "visitor": [e["user_pseudo_id"] for e in EVENTS],
            "timestamp": pd.to_datetime([e["event_timestamp"] for e in EVENTS], unit="us"),
            "activity": [e["event_name"] for e in EVENTS],
            "session": [str(e["event_params"][0]["value"]["int_value"]) for e in EVENTS],
            "amount": [
                next((p["value"].get("double_value") for p in e["event_params"] if p["key"] == "amount"), None) for e in EVENTS
            ],
        }
    )
    flat.to_csv(tmp_path / "activity.csv", index=False)
    cfg = config(
        tmp_path,
        "activity.csv",
        format="flat",
        key="visitor",
        time_column="timestamp",
        type_column="activity",
        session_column="session",
    )
    got = compute_features(cfg, LEADS)
    want = compute_features(ga4, LEADS)
    same = [
        "views",
        "downloads",
        "sessions",
        "recency_d",
        "tenure_d",
        "active_days",
        "views_7d",
        "avg_amount",
        "max_amount",
        "hesitation_s",
        "decayed",
    ]
    pd.testing.assert_frame_equal(got[same], want[same])
    assert (got["engaged_s"] == 0).all() and got["google_share"].isna().all()  # a flat log has neither


def test_features_join_the_leads_and_errors_are_one_line(ga4):
    out = add_event_features(ga4, LEADS)
    assert list(out.columns) == [*LEADS.columns, *[f["name"] for f in FEATURES]]
    # The configured columns stay as written; the model's data section adds the features.
    assert "views" not in ga4.data.columns.numeric and "views" not in ga4.data.engagement_columns
    assert ga4.model_data.columns.numeric == ["Age", *[f["name"] for f in FEATURES]]
    assert ga4.model_data.engagement_columns == [f["name"] for f in FEATURES]
    with pytest.raises(LeadDataError, match="no column 'Client'"):
        compute_features(ga4, LEADS.drop(columns="Client"))
    with pytest.raises(LeadDataError, match="no usable cut-off in 'Created'"):
        compute_features(ga4, LEADS.assign(Created=["2026-01-10", "soon", "2026-01-01"]))
    with pytest.raises(LeadDataError, match="no file matches"):
        compute_features(config(ga4.root, "nowhere/*.json"), LEADS)


def test_no_events_rule_and_a_folder_with_a_readme(ga4, tmp_path):
    (tmp_path / "ga4" / "README.txt").write_text("derived events, not observed\n")
    folder = config(tmp_path, "ga4", no_events="missing")  # a folder: its event files, not the README
    f = compute_features(folder, LEADS)
    c = f.iloc[2]  # the lead without events
    assert c[["views", "sessions", "active_days", "engaged_s", "decayed"]].isna().all()
    assert f.iloc[0]["views"] == 2 and f.iloc[1]["views"] == 0  # a lead with events keeps its zero counts
    zero = compute_features(config(tmp_path, "ga4"), LEADS).iloc[2]
    assert (zero[["views", "sessions", "active_days", "engaged_s", "decayed"]] == 0).all()
