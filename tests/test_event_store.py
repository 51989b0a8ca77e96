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
from leadscoring.events.store import GA4_DAY, ingest, ingest_report
from tests.test_events import DAY, EVENTS, FEATURES, LEADS, config, ga4_event


def _write_json(path, events, gz=False):
    """A GA4 export file; named for a day (events_YYYYMMDD), its events carry that day's
    event_date, as GA4 writes them (the hand-checked EVENTS all say 20260101)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if m := GA4_DAY.match(path.name):
        events = [{**e, "event_date": "".join(m.groups())} for e in events]
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


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("events_20260110.json", b""),  # 0 bytes
        ("events_20260110.json", b"\n\n"),  # blank lines: no events
        ("events_20260110.json.gz", gzip.compress(b"")),  # compressed nothing
    ],
)
def test_an_empty_day_file_is_refused_and_the_day_is_kept(export, tmp_path, make_project, capsys, name, content):
    """Defect 1: an empty file replaced a day already in the store (exit 0, "0 rows")."""
    cfg, files = export
    ingest(cfg, files)
    day = store_folder(cfg) / "events_20260110.parquet"
    before = day.read_bytes()
    empty = tmp_path / "empty" / name
    empty.parent.mkdir()
    empty.write_bytes(content)
    with pytest.raises(LeadDataError, match=rf"^events ingest: .*{name}.*(empty|no events)") as err:
        ingest(cfg, [files[0], empty])  # nothing written, not even the good day
    assert "\n" not in str(err.value)
    assert day.read_bytes() == before and _store_listing(cfg) == ["events_20260101.parquet", "events_20260110.parquet"]
    project = make_project(events={"path": "ga4/*.json", "lead_key": "Client", "features": FEATURES})
    assert main(["--config", str(project), "events", "ingest", str(empty)]) == 2
    err_line = capsys.readouterr().err.strip()
    assert name in err_line and "\n" not in err_line


def test_a_log_with_a_header_and_no_rows_is_refused(tmp_path):
    """Defect 1 (flat log): a header-only file is no day's events."""
    cfg = config(tmp_path, "activity.csv", format="flat", key="visitor")
    (tmp_path / "activity.csv").write_text("visitor,timestamp,activity\n", encoding="utf-8")
    with pytest.raises(LeadDataError, match=r"^events ingest: activity\.csv: no rows"):
        ingest(cfg, [tmp_path / "activity.csv"])
    assert _store_listing(cfg) == []


def test_an_impossible_day_in_a_name_is_refused(export, tmp_path):
    """Defect 10: events_20251399.json (a copy of another day) was stored and counted twice."""
    cfg, files = export
    ingest(cfg, files)
    want = compute_features(cfg, LEADS, files=store_files(cfg))
    copy = tmp_path / "copy" / "events_20251399.json"
    copy.parent.mkdir()
    copy.write_bytes(files[0].read_bytes())
    with pytest.raises(LeadDataError, match=r"^events ingest: events_20251399\.json: 2025-13-99 in the name is not a date"):
        ingest(cfg, [copy])
    assert _store_listing(cfg) == ["events_20260101.parquet", "events_20260110.parquet"]
    pd.testing.assert_frame_equal(compute_features(cfg, LEADS, files=store_files(cfg)), want)


def test_a_file_of_another_day_is_refused(export, tmp_path):
    """Defect 10: a file's events must be of the day in its name — event_date, else the UTC
    date of event_timestamp."""
    cfg, files = export
    ingest(cfg, files)
    copy = tmp_path / "copy" / "events_20260105.json"
    copy.parent.mkdir()
    copy.write_bytes(files[0].read_bytes())  # day 1's events under the 5th's name
    with pytest.raises(LeadDataError) as err:
        ingest(cfg, [copy])
    assert str(err.value) == (
        "events ingest: events_20260105.json: the name says 2026-01-05 but 5 of its 5 events are of 2026-01-01 "
        "(event_date, else the UTC date of event_timestamp); nothing ingested"
    )
    assert _store_listing(cfg) == ["events_20260101.parquet", "events_20260110.parquet"]
    # Without event_date, the UTC date of the timestamp: v1's view at 2026-01-10 00:00:00.5 UTC.
    late = {k: v for k, v in ga4_event("v1", 9 * DAY + 0.5, "page_view", 3).items() if k != "event_date"}
    wrong = tmp_path / "ts" / "events_20260109.json"
    wrong.parent.mkdir()
    wrong.write_text(json.dumps(late) + "\n", encoding="utf-8")
    with pytest.raises(LeadDataError, match=r"the name says 2026-01-09 but 1 of its 1 events are of 2026-01-10 "):
        ingest(cfg, [wrong])
    right = wrong.with_name("events_20260110.json")
    right.write_text(json.dumps(late) + "\n", encoding="utf-8")
    assert ingest(cfg, [right]) == {"2026-01-10": 1}


def test_events_without_a_visitor_key_are_left_out_and_reported(export, tmp_path, caplog):
    """Defect 11: events without user_pseudo_id (events.key) went into the store with a NULL key."""
    cfg, files = export
    keyless = [{**e, "user_pseudo_id": v} for e, v in zip(EVENTS[5:] * 2, [None, None, "", " "], strict=True)]
    mixed = _write_json(tmp_path / "mixed" / "events_20260110.json", [*EVENTS[5:], *keyless])
    with caplog.at_level("WARNING", logger="leadscoring.events.store"):
        report = ingest_report(cfg, [files[0], mixed])
    assert "2026-01-10: 2 rows" in report and "4 events without a visitor key ('user_pseudo_id', events.key) left out" in report
    assert any(r.levelname == "WARNING" and "4 event(s) without a visitor key" in r.getMessage() for r in caplog.records)
    day = store_folder(cfg) / "events_20260110.parquet"
    assert duckdb.sql(f"SELECT count(*), count(user_pseudo_id) FROM read_parquet('{day}')").fetchall() == [(2, 2)]
    from leadscoring.events.store import Ingested, ingest_files

    assert ingest_files(cfg, [mixed]) == Ingested({"2026-01-10": 2}, 4)
    # A day of key-less events only would be a day of nothing: refused, the day kept.
    before = day.read_bytes()
    only = _write_json(tmp_path / "only" / "events_20260110.json", keyless)
    with pytest.raises(LeadDataError, match=r"events_20260110\.json: none of the 4 events of 2026-01-10 has a visitor key"):
        ingest(cfg, [only])
    assert day.read_bytes() == before


def test_flat_rows_without_a_visitor_key_are_left_out(tmp_path):
    """Defect 11 (flat log)."""
    log = pd.DataFrame({"visitor": ["v1", "", "v2"], "timestamp": ["2026-01-01 10:00"] * 3, "activity": ["page_view"] * 3})
    log.to_csv(tmp_path / "activity.csv", index=False)
    cfg = config(tmp_path, "activity.csv", format="flat", key="visitor")
    assert ingest(cfg, [tmp_path / "activity.csv"]) == {"2026-01-01": 2}
    stored = duckdb.sql(f"SELECT visitor FROM read_parquet('{store_files(cfg)[0]}') ORDER BY 1").fetchall()
    assert stored == [("v1",), ("v2",)]
    from leadscoring.events.store import Ingested, ingest_files

    assert ingest_files(cfg, [tmp_path / "activity.csv"]) == Ingested({"2026-01-01": 2}, 1)


def test_a_first_ingest_leaving_out_files_of_events_path_warns_that_they_stop_counting(export, make_project, capsys):
    """Scoring reads the store alone once it has files: a first ingest of one new day made
    the history of events.path silently stop counting in every score."""
    _, files = export
    project = make_project(events={"path": str(files[0].parent / "events_*.json"), "lead_key": "Client", "features": FEATURES})
    assert main(["--config", str(project), "events", "ingest", str(files[1])]) == 0
    out = capsys.readouterr().out
    assert "WARNING: scoring reads the event store alone from now on, and 1 file(s) of events.path" in out
    assert "e.g. events_20260101.json" in out and f"leadscoring events ingest {files[0].parent / 'events_*.json'}" in out
    assert main(["--config", str(project), "events", "ingest", str(files[0])]) == 0  # the store is no longer new
    assert "WARNING" not in capsys.readouterr().out


def test_a_first_ingest_of_every_file_of_events_path_says_nothing_more(export, make_project, capsys):
    _, files = export
    project = make_project(events={"path": str(files[0].parent / "events_*.json"), "lead_key": "Client", "features": FEATURES})
    assert main(["--config", str(project), "events", "ingest", *map(str, files)]) == 0
    assert "WARNING" not in capsys.readouterr().out
