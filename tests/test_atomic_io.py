"""Atomic writes leave nothing behind: the temporary files of a writer killed mid-write
(``kill -9`` during ``score``, a history write or ``events ingest``) are removed by the next
write to the same destination, and a live writer's temporary file is never touched."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from leadscoring.errors import LeadDataError
from leadscoring.io import append_json_line, atomic_path, read_json_object, write_text

HOUR = 3600.0


def _dead_pid() -> int:
    """The id of a process that has ended (and been waited for)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _leftover(folder, name: str, age: float) -> object:
    path = folder / name
    path.write_bytes(b"x" * 1024)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def _host_tag(tmp_path) -> str:
    """The writer tag of this host, as atomic_path names its temporary file."""
    with atomic_path(tmp_path / "probe.txt") as tmp:
        tmp.write_text("probe", encoding="utf-8")
        m = re.fullmatch(rf"\.probe\.txt\.{os.getpid()}-([0-9a-f]{{8}})\.[a-z0-9_]{{8}}\.tmp", tmp.name)
    assert m is not None, tmp.name  # the temporary name records its writer
    return m.group(1)


@pytest.mark.skipif(os.name == "nt", reason="a process's liveness is told by os.kill(pid, 0), POSIX only")
def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    host = _host_tag(tmp_path)
    dead = _dead_pid()
    stale = _leftover(tmp_path, f".scores.csv.{dead}-{host}.k2j4x9_a.tmp", HOUR)  # killed an hour ago
    live = _leftover(tmp_path, f".scores.csv.{os.getpid()}-{host}.p0q1r2s3.tmp", HOUR)  # this process: alive
    recent = _leftover(tmp_path, f".scores.csv.{dead}-{host}.zz00zz00.tmp", 60)  # a minute old: kept for now
    other_host = _leftover(tmp_path, f".scores.csv.{dead}-0badc0de.abcdefgh.tmp", HOUR)  # can't tell: kept a day
    old_other_host = _leftover(tmp_path, f".scores.csv.{dead}-0badc0de.hgfedcba.tmp", 25 * HOUR)
    legacy = _leftover(tmp_path, ".scores.csv.a1b2c3d4.tmp", 25 * HOUR)  # no writer recorded, over a day old
    legacy_recent = _leftover(tmp_path, ".scores.csv.e5f6g7h8.tmp", HOUR)
    others = [
        _leftover(tmp_path, f".scores.csv.bak.{dead}-{host}.q1w2e3r4.tmp", 25 * HOUR),  # another destination's
        _leftover(tmp_path, f".other.csv.{dead}-{host}.q1w2e3r4.tmp", 25 * HOUR),
        _leftover(tmp_path, "scores.csv.tmp", 25 * HOUR),  # not ours
    ]
    write_text("id,score\n1,90\n", tmp_path / "scores.csv")
    assert (tmp_path / "scores.csv").read_text(encoding="utf-8") == "id,score\n1,90\n"
    assert not stale.exists() and not old_other_host.exists() and not legacy.exists()
    assert live.exists() and recent.exists() and other_host.exists() and legacy_recent.exists()
    assert all(p.exists() for p in others)

    # Two writes to one destination at once: the second never removes the first's file.
    dest = tmp_path / "history.parquet"
    with atomic_path(dest) as first:
        first.write_bytes(b"first")
        old = time.time() - 2 * HOUR
        os.utime(first, (old, old))  # a long write, by a live process
        write_text("second", dest)
        assert first.exists()
    assert dest.read_bytes() == b"first" and not list(tmp_path.glob(".history.parquet.*"))


def test_a_full_disk_is_one_line_naming_the_product_whoever_writes_it(tmp_path, monkeypatch):
    """Every product goes through atomic_path (models, manifests, cards, scores, history):
    a full disk becomes one line naming it, and the old file stays."""
    import errno

    import pytest

    from leadscoring.errors import OutputPathError
    from leadscoring.io import write_json

    dest = tmp_path / "model.json"
    dest.write_text("{}")

    def full(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pathlib.Path.write_text", full)
    with pytest.raises(OutputPathError, match=r"model\.json: not written, the disk is full"):
        write_json({"a": 1}, dest)
    monkeypatch.undo()
    assert dest.read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == ["model.json"]


def test_a_log_line_after_an_unfinished_one_is_not_lost(tmp_path):
    """A writer killed mid-line leaves a torn last line: the next append ends it first, so the
    reader skips the torn line alone and keeps the new one."""
    from leadscoring.tracking import read_run_log

    log = tmp_path / "run_log.jsonl"
    append_json_line({"step": "pull"}, log)
    with open(log, "ab") as fh:
        fh.write(b'{"cycle": "c1", "step": "retr')  # killed here
    append_json_line({"step": "retrain"}, log)
    append_json_line({"step": "rollback"}, log)
    assert [line.get("step") for line in read_run_log(log)] == ["pull", "retrain", "rollback"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"at": "caf\xe9"}', "not UTF-8 text"),
        (b'{"at": ', "not a readable"),
        (b"[1, 2]", "not a JSON object"),
    ],
)
def test_a_damaged_state_file_is_one_line_naming_it(tmp_path, content, expected):
    state = tmp_path / "pull_watermark.json"
    state.write_bytes(content)
    with pytest.raises(LeadDataError) as err:
        read_json_object(state, "pull watermark", "delete it to pull everything again")
    message = str(err.value)
    assert "\n" not in message and str(state) in message and expected in message and message.endswith("again")


def test_a_dask_output_folder_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """The engine's commit moves the previous output aside before the new one takes its name:
    a failure in between puts it back, success leaves only the new parts."""
    from leadscoring import io
    from leadscoring.serving import storage

    out = tmp_path / "scored"

    def job(text: str) -> str:
        tmp = storage.temporary_prefix(str(out))
        os.makedirs(tmp)
        (tmp_path / os.path.basename(tmp) / "part-00000.csv").write_text(text)
        return tmp

    storage.commit(job("first\n"), str(out), ["part-00000.csv"])
    real = os.replace

    def fail_on_the_new_output(src, dst):
        if os.path.basename(str(src)).startswith(".scored.tmp-"):
            raise OSError("disk gone")
        return real(src, dst)

    monkeypatch.setattr(io.os, "replace", fail_on_the_new_output)
    with pytest.raises(OSError, match="disk gone"):
        storage.commit(job("second\n"), str(out), ["part-00000.csv"])
    monkeypatch.setattr(io.os, "replace", real)
    assert (out / "part-00000.csv").read_text() == "first\n" and (out / "_SUCCESS").is_file()
    storage.commit(job("third\n"), str(out), ["part-00000.csv"])
    assert (out / "part-00000.csv").read_text() == "third\n"
    assert not [p.name for p in tmp_path.iterdir() if ".old-" in p.name]


@pytest.mark.skipif(os.name == "nt", reason="a process's liveness is told by os.kill(pid, 0), POSIX only")
def test_a_lock_whose_holder_was_killed_is_taken_over_at_once(tmp_path):
    """A pull killed by `timeout` or `systemctl stop` leaves its lock: the next pull takes it
    over when its holder, a process of this host, is gone, instead of waiting hours; a live
    holder's lock, another host's and a lock of an older version wait as before."""
    from leadscoring.errors import LockHeld
    from leadscoring.io import exclusive_lock

    lock = tmp_path / ".pull.lock"
    host, dead = _host_tag(tmp_path), _dead_pid()
    for holder, taken in [
        (f"{dead} {host} 0123abcd\n", True),  # killed: its process has ended
        (f"{os.getpid()} {host} 0123abcd\n", False),  # running (this process)
        (f"{dead} 0badc0de 0123abcd\n", False),  # another host: cannot tell
        (f"{dead} 0123abcd\n", False),  # an older version's lock: no host recorded
    ]:
        lock.write_text(holder, encoding="utf-8")
        if taken:
            with exclusive_lock(lock, "pull", stale_seconds=HOUR):
                assert lock.read_text(encoding="utf-8").startswith(f"{os.getpid()} {host} ")
            assert not lock.exists()
        else:
            with pytest.raises(LockHeld, match="another pull is running"), exclusive_lock(lock, "pull", stale_seconds=HOUR):
                pass
            assert lock.read_text(encoding="utf-8") == holder
