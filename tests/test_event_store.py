"""The event store (issue "Behavioural events -> lead features", item 5): daily export files
ingested into one parquet file per day, idempotently (a day ingested again replaces that
day), read by scoring instead of the export files; ``leadscoring events ingest``."""

from __future__ import annotations

import gzip
import json
import os

import duckdb
import pandas as pd
import pytest

from leadscoring.cli import main
from leadscoring.errors import LeadDataError
from leadscoring.events.engine import compute_features, scoring_files, store_files, store_folder
from leadscoring.events.store import ingest
from tests.test_events import DAY, EVENTS, FEATURES, LEADS, config, ga4_event


def _write_json(path, events, gz=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(json.dumps(e) for e in events) + "\n"
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def export(tmp_path):
    """Two GA4 daily export files (2026-01-01, 2026-01-10) and the configuration reading them."""
    day1 = _write_json(tmp_path / "ga4" / "events_20260101.json", EVENTS[:5])
    day10 = _write_json(tmp_path / "ga4" / "events_20260110.json", EVENTS[5:])
    return config(tmp_path, "ga4/events_*.json"), [day1, day10]


def _store_listing(cfg):
    return sorted(os.listdir(store_folder(cfg)))


def test_ingest_writes_one_file_per_day_read_like_the_export(export):
    cfg, files = export
    assert scoring_files(cfg) == [str(f) for f in files]  # no store yet: the export files
    assert ingest(cfg, files) == {"2026-01-01": 5, "2026-01-10": 2}
    assert _store_listing(cfg) == ["events_20260101.parquet", "events_20260110.parquet"]
    assert scoring_files(cfg) == store_files(cfg)  # the store once it has files
    rows = duckdb.sql(f"SELECT event_params FROM read_parquet('{store_files(cfg)[0]}') LIMIT 1").fetchall()[0][0]
    assert rows[0]["key"] == "ga_session_id" and rows[0]["value"]["int_value"] == 1  # nested, as exported
    pd.testing.assert_frame_equal(compute_features(cfg, LEADS, files=store_files(cfg)), compute_features(cfg, LEADS))


def test_ingesting_again_changes_nothing_and_a_day_is_replaced_whole(export, tmp_path):
    cfg, files = export
    ingest(cfg, files)
    before = compute_features(cfg, LEADS, files=store_files(cfg))
    assert ingest(cfg, files) == {"2026-01-01": 5, "2026-01-10": 2}  # idempotent: never duplicated
    assert _store_listing(cfg) == ["events_20260101.parquet", "events_20260110.parquet"]
    pd.testing.assert_frame_equal(compute_features(cfg, LEADS, files=store_files(cfg)), before)
    # The day's corrected export (one view more for v1, v2's download gone) replaces the day.
    fixed = [*EVENTS[5:6], ga4_event("v1", 9 * DAY + 60, "page_view", 3, page_location="/rates")]
    assert ingest(cfg, [_write_json(tmp_path / "fix" / "events_20260110.json", fixed)]) == {"2026-01-10": 2}
    after = compute_features(cfg, LEADS, files=store_files(cfg))
    assert after.loc[0, "views"] == before.loc[0, "views"] + 1 and after.loc[1, "downloads"] == 0
    assert _store_listing(cfg) == ["events_20260101.parquet", "events_20260110.parquet"]  # no temporary left


def test_gzip_parquet_and_shards_of_one_day(export, tmp_path):
    cfg, files = export
    want = (ingest(cfg, files), compute_features(cfg, LEADS, files=store_files(cfg)))
    other = config(tmp_path / "other", "unused/*.json")
    gz = _write_json(tmp_path / "gz" / "events_20260101.json.gz", EVENTS[:5], gz=True)
    parquet = tmp_path / "pq" / "events_20260110.parquet"
    parquet.parent.mkdir()
    duckdb.sql(f"COPY (SELECT * FROM read_json_auto('{files[1]}')) TO '{parquet}' (FORMAT parquet)")
    assert ingest(other, [gz, parquet]) == want[0]
    pd.testing.assert_frame_equal(compute_features(other, LEADS, files=store_files(other)), want[1])
    shards = [
        _write_json(tmp_path / "sh" / f"events_20260101-00000000000{i}.json", part)
        for i, part in enumerate((EVENTS[:2], EVENTS[2:5]))
    ]
    assert ingest(other, shards) == {"2026-01-01": 5}  # the day's shards gathered in one file


def test_a_flat_log_is_split_by_day(tmp_path):
    log = pd.DataFrame(
        {
            "visitor": ["v1", "v1", "v2", "v1", "v2"],
            "timestamp": ["2026-01-01 10:00", "2026-01-01 23:59:59", "2026-01-02 00:00", "2026-01-05 08:00", "2026-01-05 09:00"],
            "activity": ["page_view", "simulator", "file_download", "page_view", "page_view"],
            "amount": ["", "1500", "", "", ""],
        }
    )
    log.to_csv(tmp_path / "activity.csv", index=False)
    cfg = config(tmp_path, "activity.csv", format="flat", key="visitor")
    assert ingest(cfg, [tmp_path / "activity.csv"]) == {"2026-01-01": 2, "2026-01-02": 1, "2026-01-05": 2}
    assert _store_listing(cfg) == ["events_20260101.parquet", "events_20260102.parquet", "events_20260105.parquet"]
    at = "2026-02-01T00:00:00Z"
    pd.testing.assert_frame_equal(compute_features(cfg, LEADS, at=at, files=store_files(cfg)), compute_features(cfg, LEADS, at=at))
    # A corrected log of the 5th only replaces that day.
    log.iloc[3:4].to_csv(tmp_path / "fifth.csv", index=False)
    assert ingest(cfg, [tmp_path / "fifth.csv"]) == {"2026-01-05": 1}
    assert compute_features(cfg, LEADS, at=at, files=store_files(cfg)).loc[0:1, "views"].tolist() == [2, 0]


def test_a_failed_ingest_leaves_the_store_as_it_was(export, tmp_path):
    cfg, files = export
    ingest(cfg, files)
    day = store_folder(cfg) / "events_20260110.parquet"
    before = day.read_bytes()
    broken = tmp_path / "bad" / "events_20260110.json"
    broken.parent.mkdir()
    broken.write_text('{"event_name": "page_view", "event_timestamp": \n', encoding="utf-8")
    with pytest.raises(LeadDataError, match=r"^events ingest: "):
        ingest(cfg, [broken])
    assert day.read_bytes() == before and _store_listing(cfg) == ["events_20260101.parquet", "events_20260110.parquet"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("events_2026.json", "{}", "named events_YYYYMMDD"),
        ("missing/events_20260101.json", None, "no such file"),
        ("events_20260101.txt", "x", "not a parquet, CSV or newline-delimited JSON"),
    ],
)
def test_bad_ga4_inputs_are_one_line_errors(export, tmp_path, name, content, message):
    cfg, _ = export
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(LeadDataError, match=message) as err:
        ingest(cfg, [path])
    assert "\n" not in str(err.value)


def test_bad_flat_inputs_are_one_line_errors(tmp_path):
    cfg = config(tmp_path, "activity.csv", format="flat", key="visitor")
    pd.DataFrame({"visitor": ["v1"], "timestamp": ["soon"], "activity": ["page_view"]}).to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(LeadDataError, match="'soon' in 'timestamp' .* is not a date-time"):
        ingest(cfg, [tmp_path / "a.csv"])
    pd.DataFrame({"who": ["v1"], "timestamp": ["2026-01-01"]}).to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(LeadDataError, match="no column 'visitor'"):
        ingest(cfg, [tmp_path / "b.csv"])
    with pytest.raises(LeadDataError, match="no file given"):
        ingest(cfg, [])
    assert not store_folder(cfg).exists() or _store_listing(cfg) == []


def test_cli_events_ingest(export, make_project, capsys):
    _, files = export
    project = make_project(events={"path": "ga4/*.json", "lead_key": "Client", "features": FEATURES})
    assert main(["--config", str(project), "events", "ingest", *map(str, files)]) == 0
    out = capsys.readouterr().out
    assert "2026-01-01: 5 rows" in out and "2026-01-10: 2 rows" in out and "7 rows in 2 day(s)" in out
    assert main(["--config", str(project), "events", "ingest", str(files[0].with_name("events_x.json"))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("leadscoring events: error: events ingest:") and "\n" not in err
