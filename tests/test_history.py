"""The score history: trend rules at their edges, latest scores across runs, idempotent
re-appends (also after a compaction), reloading when parts appear, concurrent writers (eight
processes, no lock) with a reader and a compaction running, appends that read no other job's
part, single-file histories of earlier versions migrated, scores files with zero-padded ids,
one-line errors, and the `score` and `history compact` commands."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from leadscoring.errors import LeadDataError
from leadscoring.serving import history as history_module
from leadscoring.serving.history import (
    TRENDS,
    ScoreHistory,
    append_scores_file,
    compact,
    history_folder,
    read_history,
    read_history_tail,
    trends,
)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
BATCH = 20  # rows per append in the concurrency test


def test_trend_rules_at_the_edges():
    points = 5
    previous = np.array([50, 50, 50, 50, 50, 50, np.nan, 0, 100])
    scores = np.array([55, 54, 45, 46, 50, 99, 70, 100, 0])
    got = trends(scores, previous, points)
    assert got.dtype == object
    assert got.tolist() == ["improving", "steady", "declining", "steady", "steady", "improving", "new", "improving", "declining"]
    assert set(got) <= set(TRENDS)
    assert trends(np.array([51]), np.array([50.0]), 1).tolist() == ["improving"]
    assert trends(np.array([], dtype=int), np.array([]), 5).tolist() == []
    with pytest.raises(ValueError, match="3 scores but 2 previous scores"):
        trends(np.array([1, 2, 3]), np.array([1.0, 2.0]), 5)


def test_two_runs_latest_lookup_and_trend(tmp_path):
    hist = ScoreHistory(tmp_path / "sub" / "score_history.parquet")  # the folder of its stem, created on the first append
    assert hist.path == tmp_path / "sub" / "score_history" and not hist.path.exists()
    assert hist.latest().empty and np.isnan(hist.lookup(["a"])).all()
    assert hist.append(["a", "b", "c"], [10, 50, 90], "m1", T0) == 3
    assert (
        hist.append(np.array(["a", "b", "d"], dtype=object), np.array([20, 48, 5]), "m2", (T0 + timedelta(days=7)).isoformat()) == 3
    )
    latest = hist.latest()
    assert latest.to_dict() == {"a": 20, "b": 48, "c": 90, "d": 5}
    assert hist.lookup(["b", "zzz", "c"]).tolist()[0] == 48.0 and np.isnan(hist.lookup(["zzz"])[0])
    run3_ids = np.array(["a", "b", "c", "d", "e"], dtype=object)
    run3 = np.array([25, 44, 86, 5, 60])
    assert trends(run3, hist.lookup(run3_ids), 5).tolist() == ["improving", "steady", "steady", "steady", "new"]

    assert len(list(hist.path.glob("part-*.parquet"))) == 2  # one part per append
    table = read_history(hist.path)
    assert table.schema.types == [
        pa.string(),
        pa.int16(),
        pa.string(),  # experiment_group
        pa.string(),
        pa.timestamp("us", tz="UTC"),
        pa.string(),
        pa.string(),
    ]
    assert table.column_names == ["lead_id", "score", "experiment_group", "model_version", "scored_at", "job_id", "inputs"]
    assert table.num_rows == 6
    assert table["scored_at"][0].as_py() == T0
    assert len(set(table["job_id"].to_pylist())) == 2  # one job id per append, minted when not given


def test_latest_by_time_then_by_append_order(tmp_path):
    hist = ScoreHistory(tmp_path / "h.parquet")
    hist.append(["a"], [70], "m1", T0 + timedelta(days=2))
    hist.append(["a"], [10], "m1", T0)  # a late backfill of an older scoring does not win
    assert hist.latest()["a"] == 70
    hist.append(["a"], [33], "m2", T0 + timedelta(days=2))  # same time: the last appended wins
    assert hist.latest()["a"] == 33


def test_re_appending_the_same_scoring_adds_nothing(tmp_path):
    hist = ScoreHistory(tmp_path / "h.parquet")
    ids, scores = [f"{i:05d}" for i in range(100)], list(range(100))
    assert hist.append(ids, scores, "m1", "2025-03-01T09:00:00Z", job_id="job-1") == 100
    parts = sorted(hist.path.iterdir())
    assert hist.append(ids, scores, "m1", "2025-03-01T09:00:00+00:00", job_id="job-1") == 0  # the same instant, written otherwise
    assert sorted(hist.path.iterdir()) == parts  # nothing written
    assert hist.append(ids[:60] + ["new1"], scores[:60] + [7], "m1", T0, job_id="job-1") == 1
    assert hist.append(ids[:10], scores[:10], "m2", T0, job_id="job-1") == 10  # another model version is another scoring
    assert read_history(hist.path).num_rows == 111
    assert hist.append([], [], "m1", T0) == 0
    compact(hist.path)  # a retry after a compaction: the job's rows are in the compacted file
    assert hist.append(ids, scores, "m1", T0, job_id="job-1") == 0
    assert hist.append(ids[:5] + ["new2"], scores[:5] + [8], "m1", T0, job_id="job-1") == 1
    assert read_history(hist.path).num_rows == 112


def test_two_jobs_in_the_same_second_are_both_kept(tmp_path):
    hist = ScoreHistory(tmp_path / "h.parquet")
    ids = ["a", "b", "c"]
    assert hist.append(ids, [10, 20, 30], "m1", T0) == 3  # one job (its id minted)
    assert hist.append(ids, [11, 21, 31], "m1", T0) == 3  # another job: same leads, model and second
    assert hist.latest().to_dict() == {"a": 11, "b": 21, "c": 31}  # the same time: the last appended wins
    assert hist.append(ids, [12, 22, 32], "m1", T0, job_id="j3") == 3
    assert hist.append(ids, [12, 22, 32], "m1", T0, job_id="j3") == 0  # the same job appended twice: once
    table = read_history(hist.path)
    assert table.num_rows == 9 and len(set(table["job_id"].to_pylist())) == 3
    with pytest.raises(LeadDataError, match="job_id must be non-empty text"):
        hist.append(ids, [1, 2, 3], "m1", T0, job_id=" ")


def _old_history(path, with_job_ids: bool) -> None:
    """A single-file history written the way earlier versions wrote it (with or without job ids)."""
    fields = [
        ("lead_id", pa.string()),
        ("score", pa.int16()),
        ("model_version", pa.string()),
        ("scored_at", pa.timestamp("us", tz="UTC")),
    ]
    columns = {"lead_id": ["a", "b"], "score": pa.array([10, 20], pa.int16()), "model_version": ["m1", "m1"], "scored_at": [T0, T0]}
    if with_job_ids:
        fields.append(("job_id", pa.string()))
        columns["job_id"] = ["old-job", "old-job"]
    pq.write_table(pa.table(columns, schema=pa.schema(fields)), path)
    (path.parent / f"{path.name}.lock").touch()


@pytest.mark.parametrize("with_job_ids", [False, True])
def test_a_single_file_history_is_read_in_place_and_migrated_on_first_append(tmp_path, with_job_ids):
    path = tmp_path / "h.parquet"
    _old_history(path, with_job_ids)
    hist = ScoreHistory(path)
    before = path.read_bytes()
    assert hist.latest().to_dict() == {"a": 10, "b": 20}  # a reader reads it where it is ...
    assert read_history(path)["lead_id"].to_pylist() == ["a", "b"]
    assert path.read_bytes() == before and not hist.path.exists()  # ... and writes nothing (a dry run, a report)
    assert hist.append(["a", "b"], [15, 25], "m1", T0) == 2  # an old row without a job id is a job of its own
    assert not path.exists() and not (tmp_path / "h.parquet.lock").exists()  # the first append moved it in
    assert sum(p.name.startswith("compacted-") for p in hist.path.iterdir()) == 1
    assert hist.append(["a", "b"], [16, 26], "m1", T0, job_id="new") == 2
    assert hist.append(["a", "b"], [16, 26], "m1", T0, job_id="new") == 0
    if with_job_ids:
        assert hist.append(["a", "b"], [10, 20], "m1", T0, job_id="old-job") == 0  # a retry of a job of the old file
    table = read_history(path)
    assert table.column_names[-2:] == ["job_id", "inputs"] and table["inputs"].null_count == 6  # none recorded
    assert table["job_id"].to_pylist()[:2] == (["old-job"] * 2 if with_job_ids else [None, None])
    assert table["job_id"].to_pylist()[-2:] == ["new", "new"] and table.num_rows == 6
    assert hist.latest().to_dict() == {"a": 16, "b": 26}


def test_a_single_file_history_is_migrated_on_first_append_beside_a_folder_path(tmp_path):
    _old_history(tmp_path / "score_history.parquet", with_job_ids=False)
    folder = tmp_path / "score_history"  # a configuration naming the folder: the old file beside it still counts
    assert history_folder(folder) == folder == history_folder(tmp_path / "score_history.parquet")
    assert append_scores_file(folder, _scores_csv(tmp_path / "s.csv"), "lead") == 3
    assert not (tmp_path / "score_history.parquet").exists()
    table = read_history(folder)
    assert table.num_rows == 5 and table["lead_id"].to_pylist()[:2] == ["a", "b"]
    assert ScoreHistory(folder).latest()["a"] == 10


def _scores_csv(path):
    path.write_text(
        "lead,score,bucket,model_version,scored_at\n"
        "00660728,87,HOT,m1,2025-03-01T09:00:00Z\n"
        "660728,12,COLD,m1,2025-03-01T09:00:00Z\n"
        "0042,50,WARM,m1,2025-03-01T09:00:00Z\n",
        encoding="utf-8",
    )
    return path


def test_reloads_only_when_the_parts_change(tmp_path, monkeypatch):
    path = tmp_path / "h"
    reader, writer = ScoreHistory(path), ScoreHistory(path)
    writer.append(["a"], [10], "m1", T0)
    first = reader.latest()
    assert reader.latest() is first  # unchanged listing: the cached series
    assert reader.lookup(["a"]).tolist() == [10.0]
    writer.append(["a", "b"], [40, 41], "m1", T0 + timedelta(hours=1))
    writer.append(["c"], [7], "m1", T0 - timedelta(hours=1))
    assert reader.latest() is not first and reader.latest().to_dict() == {"a": 40, "b": 41, "c": 7}
    assert reader.lookup(["a", "b"]).tolist() == [40.0, 41.0]
    merged = reader.latest()

    reads = []
    real = history_module._read_file
    monkeypatch.setattr(history_module, "_read_file", lambda p, *a: reads.append(p.name) or real(p, *a))
    assert compact(path).files == 3
    assert reader.latest() is merged and reads == [p for p in reads if p.startswith("part-")]  # a compaction is not re-read
    reads.clear()
    writer.append(["b"], [5], "m1", T0 + timedelta(hours=2))
    assert reader.latest().to_dict() == {"a": 40, "b": 5, "c": 7} and [r[:5] for r in reads] == ["part-"]  # only the new part
    throttled = ScoreHistory(path, refresh_seconds=3600)
    assert throttled.latest()["b"] == 5
    writer.append(["b"], [6], "m1", T0 + timedelta(hours=3))
    assert throttled.latest()["b"] == 5 and reader.latest()["b"] == 6  # listed at most every refresh_seconds
    shutil.rmtree(path)
    assert reader.latest().empty and np.isnan(reader.lookup(["a"])[0])


def test_lookup_is_fast_for_one_id_and_for_many(tmp_path):
    n = 100_000
    ids = np.array([f"L{i:07d}" for i in range(n)], dtype=object)
    hist = ScoreHistory(tmp_path / "h.parquet")
    hist.append(ids, np.arange(n) % 101, "m1", T0)
    hist.lookup(["L0000001"])  # first call reads the file and builds the lookup
    t = time.perf_counter()
    for i in range(1000):
        assert hist.lookup([ids[i * 97]])[0] == (i * 97) % 101
    single = time.perf_counter() - t
    query = np.concatenate([ids[::-1], np.array(["nobody"], dtype=object)])
    t = time.perf_counter()
    got = hist.lookup(query)
    many = time.perf_counter() - t
    assert np.array_equal(got[:-1], (np.arange(n) % 101)[::-1].astype(float)) and np.isnan(got[-1])
    assert single < 1.0 and many < 2.0, (single, many)  # measured: ~5 ms and ~50 ms


def _writer(path: str, writer: int, batches: int, go: object) -> None:
    """A writer appending ``batches`` scorings of BATCH new leads each, with its own ScoreHistory."""
    go.wait(30)  # type: ignore[attr-defined]
    hist = ScoreHistory(path)
    for b in range(batches):
        ids = [f"w{writer}-b{b:02d}-{i:02d}" for i in range(BATCH)]
        hist.append(ids, [(writer + b + i) % 101 for i in range(BATCH)], f"m{writer}", T0 + timedelta(minutes=b))


def test_eight_concurrent_writers_a_reader_and_compactions_lose_nothing(tmp_path):
    path = tmp_path / "score_history"
    writers, batches = 8, 12
    go = threading.Event()  # threads share nothing but the folder, as processes would
    procs = [threading.Thread(target=_writer, args=(str(path), w, batches, go)) for w in range(writers)]
    for p in procs:
        p.start()
    go.set()
    reader, counts, compactions = ScoreHistory(path), [], 0
    while any(p.is_alive() for p in procs):  # every read during the writes sees whole scorings, never one twice
        table = read_history(path)
        assert table.num_rows % BATCH == 0 and table.num_rows == len(set(table["lead_id"].to_pylist()))
        counts.append(table.num_rows)
        assert len(reader.latest()) % BATCH == 0
        if len(counts) % 3 == 0:
            compactions += compact(path).written is not None
    for p in procs:
        p.join(60)
        assert not p.is_alive()
    assert counts == sorted(counts), counts  # rows never disappear, compactions included
    table = read_history(path).to_pandas()
    expected = {f"w{w}-b{b:02d}-{i:02d}" for w in range(writers) for b in range(batches) for i in range(BATCH)}
    assert len(table) == writers * batches * BATCH and set(table["lead_id"]) == expected
    assert table.groupby("model_version").size().to_dict() == {f"m{w}": batches * BATCH for w in range(writers)}
    assert len(reader.latest()) == writers * batches * BATCH
    compact(path)
    assert [p.name[:10] for p in path.iterdir()] == ["compacted-"] and read_history(path).num_rows == len(table)
    assert len(reader.latest()) == len(table)


def test_an_append_reads_no_other_jobs_part_and_works_without_fcntl(tmp_path, monkeypatch):
    hist = ScoreHistory(tmp_path / "h")
    for day in range(5):
        hist.append([f"L{i}" for i in range(50)], [day] * 50, "m1", T0 + timedelta(days=day))
    compact(hist.path)
    hist.append(["x"], [1], "m1", T0, job_id="mine")
    read = []
    real = history_module._read_file
    monkeypatch.setattr(history_module, "_read_file", lambda p, *a: read.append(p) or real(p, *a))
    monkeypatch.setattr(history_module.pq, "read_table", lambda *a, **k: pytest.fail("the history was read"))
    assert hist.append(["y"], [2], "m1", T0) == 1 and read == []  # a new job: nothing read
    assert hist.append(["x", "z"], [1, 3], "m1", T0, job_id="mine") == 1 and len(read) == 1  # its own part only
    code = (
        "import sys; sys.modules['fcntl'] = None\n"  # as on Windows: no fcntl to import
        "from leadscoring.serving.history import ScoreHistory, compact\n"
        f"h = ScoreHistory({str(tmp_path / 'w')!r}); h.append(['a'], [1], 'm1', '2025-03-01T09:00:00Z')\n"
        "h.append(['b'], [2], 'm1', '2025-03-01T09:00:00Z'); compact(h.path)\n"
        "assert h.latest().to_dict() == {'a': 1, 'b': 2}\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_scores_csv_keeps_zero_padded_ids_as_text(tmp_path):
    scores = _scores_csv(tmp_path / "scores.csv")
    history = tmp_path / "h.parquet"
    assert append_scores_file(history, scores, "lead") == 3
    assert ScoreHistory(history).latest().to_dict() == {"00660728": 87, "660728": 12, "0042": 50}
    assert append_scores_file(history, scores, "lead") == 0  # a retried job
    other = tmp_path / "other_scores.csv"  # another job, the same leads in the same second
    other.write_text(scores.read_text(encoding="utf-8").replace(",87,", ",88,"), encoding="utf-8")
    assert append_scores_file(history, other, "lead") == 3
    assert append_scores_file(history, other, "lead") == 0
    assert append_scores_file(history, other, "lead", job_id="another job") == 3
    assert ScoreHistory(history).latest()["00660728"] == 88
    parquet = tmp_path / "scores.parquet"
    pd.DataFrame(
        {"lead": ["00660728", "0099"], "score": [90, 1], "model_version": "m2", "scored_at": pd.Timestamp("2025-03-08T09:00:00Z")}
    ).to_parquet(parquet)
    assert append_scores_file(history, parquet, "lead") == 2
    assert ScoreHistory(history).lookup(["00660728", "660728", "0099"]).tolist() == [90.0, 12.0, 1.0]
    assert append_scores_file(history, parquet, "lead") == 0


def _one_line(exc: pytest.ExceptionInfo[BaseException], *words: str) -> None:
    text = str(exc.value)
    assert "\n" not in text and all(w in text for w in words), text


@pytest.mark.parametrize(
    ("ids", "scores", "words"),
    [
        (["a", " "], [1, 2], ["1 lead id(s) empty", "[1]"]),
        (["a", None], [1, 2], ["empty"]),
        ([1, 2], [1, 2], ["lead ids must be text"]),
        (["a", "b"], [1, 101], ["whole numbers from 0 to 100", "[101]"]),
        (["a", "b"], [-1, 2.5], ["whole numbers from 0 to 100", "(2 bad)"]),
        (["a", "b"], [1, "x"], ["whole numbers", "'x'"]),
        (["a", "b"], [1], ["2 lead ids but 1 scores"]),
    ],
)
def test_bad_rows_are_refused_in_one_line(tmp_path, ids, scores, words):
    hist = ScoreHistory(tmp_path / "h.parquet")
    with pytest.raises(LeadDataError) as exc:
        hist.append(ids, scores, "m1", T0)
    _one_line(exc, *words)
    assert not hist.path.exists()


def test_bad_version_time_files_are_refused_in_one_line(tmp_path):
    hist = ScoreHistory(tmp_path / "h.parquet")
    with pytest.raises(LeadDataError) as exc:
        hist.append(["a"], [1], "", T0)
    _one_line(exc, "model_version must be non-empty")
    with pytest.raises(LeadDataError) as exc:
        hist.append(["a"], [1], "m1", "yesterday")
    _one_line(exc, "scored_at", "'yesterday'")
    old = tmp_path / "old_scores.csv"
    old.write_text("lead,score,bucket\n001,50,WARM\n", encoding="utf-8")
    with pytest.raises(LeadDataError) as exc:
        append_scores_file(hist.path, old, "lead")
    _one_line(exc, str(old), "['model_version', 'scored_at']")
    with pytest.raises(LeadDataError) as exc:
        append_scores_file(hist.path, tmp_path / "nowhere.csv", "lead")
    _one_line(exc, "nowhere.csv: file not found")
    blank = tmp_path / "blank.csv"
    blank.write_text("lead,score,model_version,scored_at\n001,50,,2025-03-01\n002,5,m1,soon\n", encoding="utf-8")
    with pytest.raises(LeadDataError) as exc:
        append_scores_file(hist.path, blank, "lead")
    _one_line(exc, "blank.csv", "'model_version' is empty in 1 row(s)")
    hist.path.mkdir()
    bad = hist.path / "part-00000000000000000001-0123456789abcdef-00000000.parquet"
    bad.write_text("not parquet", encoding="utf-8")
    with pytest.raises(LeadDataError) as exc:
        hist.latest()
    _one_line(exc, str(bad), "not a readable score history")


def _fake_score_file(stamped: bool):
    def score_file(cfg, input_path, output_path, **kw):
        frame = pd.DataFrame({cfg.data.id_column: ["0007", "0008"], "score": [81, 20], "bucket": ["HOT", "COLD"]})
        if stamped:
            frame = frame.assign(model_version="m1", scored_at="2025-03-01T09:00:00Z")
        frame.to_csv(output_path, index=False)
        return {"leads": 2, "buckets": {"HOT": 1, "COLD": 1}}

    return score_file


@pytest.mark.parametrize(("stamped", "flags", "appended"), [(True, [], True), (True, ["--no-history"], False), (False, [], False)])
def test_score_command_appends_to_the_history(tmp_path, monkeypatch, capsys, stamped, flags, appended):
    from leadscoring import cli
    from leadscoring.config import load_config
    from leadscoring.serving import batch

    from .conftest import write_project

    config = write_project(tmp_path / "p")
    monkeypatch.setattr(batch, "score_file", _fake_score_file(stamped))
    out_file = tmp_path / "scores.csv"
    assert cli.main(["--config", str(config), "score", "--input", "x.csv", "--output", str(out_file), *flags]) == 0
    out = capsys.readouterr().out
    cfg = load_config(config)
    history = cfg.path("score_history")
    assert history_folder(history).exists() is appended
    if appended:
        assert f"score history: 2 rows appended to {history}" in out
        assert ScoreHistory(history).latest().to_dict() == {"0007": 81, "0008": 20}
    else:
        assert "score history" not in out


def test_two_score_commands_in_the_same_second_are_two_jobs(tmp_path, monkeypatch, capsys):
    from leadscoring import cli
    from leadscoring.config import load_config
    from leadscoring.serving import batch

    from .conftest import write_project

    config = write_project(tmp_path / "p")
    monkeypatch.setattr(batch, "score_file", _fake_score_file(True))  # the same leads, model and second
    for name in ("a.csv", "b.csv"):
        assert cli.main(["--config", str(config), "score", "--input", "x.csv", "--output", str(tmp_path / name)]) == 0
        assert "score history: 2 rows appended" in capsys.readouterr().out
    table = read_history(load_config(config).path("score_history"))
    assert table.num_rows == 4 and len(set(table["job_id"].to_pylist())) == 2


def test_a_full_disk_leaves_the_history_as_it_was(tmp_path, monkeypatch):
    import errno

    from leadscoring.errors import OutputPathError

    hist = ScoreHistory(tmp_path / "h.parquet")
    hist.append(["a"], [10], "m1", T0)
    before = sorted(p.name for p in hist.path.iterdir())

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(history_module.pq, "write_table", full_disk)
    with pytest.raises(OutputPathError) as exc:
        hist.append(["a"], [20], "m1", T0 + timedelta(days=1))
    _one_line(exc, f"{hist.path}", "not written, the disk is full (No space left on device)")
    assert sorted(p.name for p in hist.path.iterdir()) == before and hist.latest()["a"] == 10


def test_history_compact_command(tmp_path, capsys):
    from leadscoring import cli
    from leadscoring.config import load_config

    from .conftest import write_project

    config = write_project(tmp_path / "p")
    history = load_config(config).path("score_history")
    assert cli.main(["--config", str(config), "history", "compact"]) == 0
    assert "nothing to compact" in capsys.readouterr().out
    for day in range(3):
        append_scores_file(history, _scores_csv(tmp_path / f"s{day}.csv"), "lead", job_id=f"day {day}")
    assert cli.main(["--config", str(config), "history", "compact"]) == 0
    assert "3 file(s) compacted into" in capsys.readouterr().out
    assert len(list(history_folder(history).iterdir())) == 1 and read_history(history).num_rows == 9


def test_a_compaction_removes_its_own_lock_and_never_another_s(tmp_path):
    """A compaction whose lock was taken over (it ran past the stale limit) leaves the new
    owner's lock in place; otherwise it removes its own."""
    from leadscoring.serving.history import COMPACTION_LOCK, _compaction_lock

    mine, taken = tmp_path / "mine", tmp_path / "taken"
    mine.mkdir()
    taken.mkdir()
    with _compaction_lock(mine):
        assert (mine / COMPACTION_LOCK).exists()
    assert not (mine / COMPACTION_LOCK).exists()
    with _compaction_lock(taken):
        (taken / COMPACTION_LOCK).write_text("4242 another compaction\n", encoding="utf-8")
    assert (taken / COMPACTION_LOCK).read_text(encoding="utf-8") == "4242 another compaction\n"


def test_the_tail_of_the_history_is_its_end_read_from_the_newest_row_groups_back(tmp_path, monkeypatch):
    """What a check of the latest scorings reads (the A/B groups at every model load): the
    same rows as the end of the whole history, filtered, without reading the older files."""
    import pyarrow.compute as pc

    path = tmp_path / "h"
    hist = ScoreHistory(path)
    for night in range(4):
        hist.append([f"n{night}-{i}" for i in range(50)], list(range(50)), "m1", T0 + timedelta(days=night))
    compact(path)  # the first four nights in one file
    for night in range(4, 6):
        hist.append([f"n{night}-{i}" for i in range(50)], list(range(50)), "m1", T0 + timedelta(days=night))

    def keep(table):
        return pc.greater_equal(table["score"], 10)

    columns = ["lead_id", "score"]
    whole = read_history(path, columns)
    whole = whole.filter(keep(whole))
    for rows in (30, 80, 10_000):
        tail = read_history_tail(path, columns, rows, keep)
        assert tail.to_pylist() == whole.slice(max(0, whole.num_rows - rows)).to_pylist()
    opened = []
    real = history_module.pq.ParquetFile
    monkeypatch.setattr(history_module.pq, "ParquetFile", lambda p, *a, **k: opened.append(p.name) or real(p, *a, **k))
    read_history_tail(path, columns, 30, keep)
    assert len(opened) == 1 and opened[0].startswith("part-")  # the newest part alone


def test_a_damaged_history_file_is_one_line_naming_it_for_every_reader(tmp_path):
    path = tmp_path / "h"
    ScoreHistory(path).append(["a"], [10], "m1", T0)
    bad = history_folder(path) / "part-99999999999999999999-0000000000000000-00000000.parquet"
    bad.write_bytes(b"not parquet")
    for read in (
        lambda: read_history(path),
        lambda: read_history_tail(path, ["lead_id"], 5),
        lambda: history_module.locate_scorings(path, ["a"]),
    ):
        with pytest.raises(LeadDataError) as err:
            read()
        assert str(err.value).startswith(f"{bad}: not a readable score history file (") and "\n" not in str(err.value)
