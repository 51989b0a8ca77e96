"""``leadscoring pull``: the status map, the outcome history and the watermark.

The CRM is a fake one answering over ``httpx.MockTransport`` (keyset pages on (modified, id));
the connector under test is a small one reading it with the shared JSON client; the clock is
fake. Nothing here touches the network or sleeps."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import leadscoring.crm
from leadscoring import cli
from leadscoring.config import ConfigError, ProjectConfig, load_config
from leadscoring.crm.connector import Record, gone_record
from leadscoring.crm.http import CrmError, JsonClient
from leadscoring.crm.outcomes import (
    HISTORY_COLUMNS,
    OutcomeHistoryError,
    StatusMap,
    UnmappedStatusError,
    latest_outcomes,
    read_outcome_history,
)
from leadscoring.crm.pull import EPOCH, WATERMARK_FILE, destination_key, pull_outcomes, read_watermark
from leadscoring.serving.history import append_scores

from .conftest import write_project

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
STATUS_MAP = {
    "converted": [{"stage": "Won"}],
    "lost": [{"stage": "Lost"}, {"active": False}],
    "open": [{"stage": ["New", "Working"]}],
}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class FakeCrm:
    """The CRM's side: leads served in keyset pages of ``page_size`` on (modified, id), only
    those modified in [since, until]; ``fail_at_page``: that page (counted per pull) answers
    HTTP 400. ``windows`` records each request's (since, until)."""

    def __init__(self, page_size: int = 2) -> None:
        self.leads: dict[str, dict[str, Any]] = {}
        self.page_size = page_size
        self.fail_at_page: int | None = None
        self.pages = 0
        self.windows: list[tuple[str, str]] = []

    def put(self, lead_id: str, modified: datetime, *, deleted: bool = False, **fields: Any) -> None:
        self.leads[lead_id] = {"id": lead_id, "modified": modified.isoformat(), "deleted": deleted, "fields": fields}

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.pages += 1
        q = request.url.params
        self.windows.append((q["since"], q["until"]))
        if self.fail_at_page == self.pages:
            return httpx.Response(400, json={"error": "INVALID_CURSOR"})
        since, until = datetime.fromisoformat(q["since"]), datetime.fromisoformat(q["until"])
        after = (datetime.fromisoformat(q["after_modified"]), q["after_id"]) if "after_id" in q else None
        rows = sorted(
            (datetime.fromisoformat(lead["modified"]), lead["id"], lead)
            for lead in self.leads.values()
            if since <= datetime.fromisoformat(lead["modified"]) <= until
        )
        rows = [r for r in rows if after is None or (r[0], r[1]) > after]
        page = rows[: self.page_size]
        return httpx.Response(200, json={"items": [r[2] for r in page], "more": len(rows) > self.page_size})

    def client(self) -> JsonClient:
        self.pages = 0
        return JsonClient("fake", "https://crm.example", transport=httpx.MockTransport(self.handler), sleep=lambda s: None)


class FakeConnector:
    """A connector reading :class:`FakeCrm` page by page (what a real one does with its CRM)."""

    kind = "rest"

    def __init__(self, crm: FakeCrm, late: list[Record] | None = None) -> None:
        self.crm = crm
        self.late = late or []  # records a sloppy CRM returns beyond the window
        self.known_ids: list[str] | None = None

    def pull(
        self, client: JsonClient, since: datetime, until: datetime, known_ids: Collection[str] | None = None
    ) -> Iterator[Record]:
        self.known_ids = list(known_ids) if known_ids is not None else None
        after: dict[str, str] = {}
        while True:
            page = client.request("GET", "/leads", params={"since": since.isoformat(), "until": until.isoformat(), **after})
            for item in page["items"]:
                yield Record(item["id"], datetime.fromisoformat(item["modified"]), item["fields"], item["deleted"])
            if not page["more"]:
                break
            last = page["items"][-1]
            after = {"after_modified": last["modified"], "after_id": last["id"]}
        yield from self.late

    def default_status_map(self) -> dict[str, list[dict[str, Any]]]:
        return {"converted": [{"stage": "Won"}], "lost": [{"stage": "Lost"}], "open": [{"stage": ["New", "Working"]}]}

    def push_request(self, lead_id: str, values: Any) -> Any:
        raise NotImplementedError

    def read_back(self, client: JsonClient, lead_id: str, names: list[str]) -> dict[str, Any]:
        raise NotImplementedError

    def status_values(self, client: JsonClient) -> dict[str, list[str]] | None:
        return None


def project(tmp_path: Path, **crm: Any) -> ProjectConfig:
    section = {"kind": "rest", "url": "https://CRM.example:443/api/", "status_map": STATUS_MAP, "overlap_seconds": 300, **crm}
    return load_config(write_project(tmp_path, crm=section))


def pull(cfg: ProjectConfig, crm: FakeCrm, now: datetime, **kw: Any):
    connector = kw.pop("connector", None) or FakeConnector(crm)
    return pull_outcomes(cfg, connector=connector, client=crm.client(), now=lambda: now, **kw)


def history_bytes(cfg: ProjectConfig) -> bytes:
    path = cfg.path("outcome_history")
    return path.read_bytes() if path.exists() else b""


def watermark(cfg: ProjectConfig) -> datetime | None:
    assert cfg.crm is not None
    return read_watermark(cfg.path("crm_state") / WATERMARK_FILE, destination_key(cfg.crm.kind, cfg.crm.url))


# -- the status map ---------------------------------------------------------------------------


def test_status_map_rules_text_case_booleans_lists_and_order():
    m = StatusMap.from_rules(
        {"open": [{"stage": ["new", "WORKING"]}], "lost": [{"active": False}], "converted": [{"stage": "won", "paid": True}]}
    )
    assert m.match({"stage": "Won", "paid": "TRUE"}) == "converted"  # all fields of a rule, as text
    assert m.match({"stage": "Won", "paid": False}) is None
    assert m.match({"stage": " working ", "active": True}) == "open"
    assert m.match({"stage": "New", "active": "false"}) == "lost"  # lost is tried before open
    assert m.match({"stage": "won", "paid": True, "active": False}) == "converted"  # converted first
    assert m.match({"stage": 1}) is None and m.describe({"stage": 1}) == "stage=1, paid=(missing), active=(missing)"
    with pytest.raises(ConfigError, match=r"crm\.status_map\.lost\[0\]: a rule is a non-empty mapping"):
        StatusMap.from_rules({"lost": [{}]})
    with pytest.raises(ConfigError, match=r"crm\.status_map\.open\[0\]\.stage: a value or a list of values"):
        StatusMap.from_rules({"open": [{"stage": {"is": "new"}}]})


def test_an_empty_status_map_is_the_connector_s_usual_one(tmp_path):
    cfg = project(tmp_path, status_map={})
    assert cfg.crm is not None
    m = StatusMap.from_config(cfg.crm, FakeConnector(FakeCrm()))
    assert m.match({"stage": "won"}) == "converted" and m.crm == "rest"


# -- window and watermark ---------------------------------------------------------------------


def test_first_pull_from_the_beginning_then_from_the_watermark_minus_the_overlap(tmp_path):
    cfg, crm = project(tmp_path), FakeCrm()
    crm.put("a", at(-30), stage="New")
    crm.put("b", at(-10), stage="Won")
    ticks = iter([T0, T0 + timedelta(hours=5)])  # the clock moves on during the pull: only its first reading counts
    connector = FakeConnector(crm, late=[Record("z", at(1), {"stage": "Won"})])  # stamped after the window
    first = pull_outcomes(cfg, connector=connector, client=crm.client(), now=lambda: next(ticks))
    assert (first.since, first.until) == (EPOCH, T0)
    assert set(crm.windows) == {(EPOCH.isoformat(), T0.isoformat())}  # every page asked the same frozen window
    assert first.read == 2 and first.outside_window == 1 and first.appended == 2
    assert watermark(cfg) == at(-10) == first.watermark  # the greatest time the CRM wrote, not our clock
    assert "z" not in set(latest_outcomes(cfg.path("outcome_history"))["lead_id"])

    crm.put("c", at(20), stage="Lost")
    crm.windows.clear()
    second = pull(cfg, crm, at(60))
    assert (second.since, second.until) == (at(-10) - timedelta(seconds=300), at(60))
    assert crm.windows[0] == (second.since.isoformat(), at(60).isoformat())
    assert second.read == 2 and second.appended == 1  # b re-read within the overlap adds nothing
    assert watermark(cfg) == at(20)
    got = latest_outcomes(cfg.path("outcome_history")).set_index("lead_id")["outcome"].to_dict()
    assert got == {"a": "open", "b": "converted", "c": "lost"}

    crm.windows.clear()
    idle = pull(cfg, crm, at(120))  # nothing new: the watermark stays a CRM time, never our clock
    assert idle.appended == 0 and watermark(cfg) == at(20) and idle.since == at(20) - timedelta(seconds=300)
    assert "watermark unchanged" in str(idle)


def test_identical_times_across_a_page_boundary_ties_by_id(tmp_path):
    cfg, crm = project(tmp_path, overlap_seconds=0), FakeCrm(page_size=2)
    for lead in ["e", "a", "d", "c", "b"]:
        crm.put(lead, at(-5), stage="New")
    first = pull(cfg, crm, T0)
    assert first.read == 5 and crm.pages == 3
    assert read_outcome_history(cfg.path("outcome_history"))["lead_id"].tolist() == ["a", "b", "c", "d", "e"]
    crm.put("aa", at(-5), stage="Won")  # written late, stamped with the watermark's very instant
    second = pull(cfg, crm, at(10))
    assert second.since == at(-5)  # inclusive lower bound, even without overlap
    assert second.read == 6 and [r.lead_id for r in second.rows] == ["aa"]


def test_a_rerun_adds_nothing_and_rows_are_in_time_then_id_order(tmp_path):
    cfg, crm = project(tmp_path), FakeCrm(page_size=3)
    crm.put("b", at(-2), stage="New")
    crm.put("a", at(-2), stage="Working")
    crm.put("c", at(-9), stage="Lost")
    pull(cfg, crm, T0)
    once = history_bytes(cfg)
    lines = once.decode("utf-8").splitlines()
    assert lines[0] == ",".join(HISTORY_COLUMNS)
    assert [line.split(",")[0] for line in lines[1:]] == ["c", "a", "b"]
    assert lines[1] == 'c,lost,2026-03-01T08:51:00Z,,false,"{""stage"":""Lost""}"'
    assert pull(cfg, crm, at(30)).appended == 0 and pull(cfg, crm, at(31)).appended == 0
    assert history_bytes(cfg) == once


# -- unmapped statuses ------------------------------------------------------------------------


def test_unmapped_under_fail_names_crm_lead_field_value_and_loses_nothing(tmp_path):
    cfg, crm = project(tmp_path, unmapped="fail"), FakeCrm()
    crm.put("a", at(-5), stage="New")
    pull(cfg, crm, T0)
    before, mark = history_bytes(cfg), watermark(cfg)
    crm.put("b", at(1), stage="Won")
    crm.put("q7", at(2), stage="Parked")
    with pytest.raises(UnmappedStatusError) as err:
        pull(cfg, crm, at(10))
    text = str(err.value)
    assert "\n" not in text and text.startswith("rest: lead q7: ") and 'stage="Parked"' in text
    assert history_bytes(cfg) == before and watermark(cfg) == mark  # b was read but nothing was written


def test_unmapped_under_warn_counts_open_and_reports_each_value_once(tmp_path, caplog):
    cfg, crm = project(tmp_path, unmapped="warn"), FakeCrm()
    for lead, stage in [("a", "Parked"), ("b", "Parked"), ("c", "Odd"), ("d", "Won")]:
        crm.put(lead, at(-5), stage=stage)
    with caplog.at_level(logging.WARNING, logger="leadscoring.crm.pull"):
        got = pull(cfg, crm, T0)
    assert got.outcomes == {"converted": 1, "lost": 0, "open": 3}
    assert got.unmapped == {'stage="Odd", active=(missing)': 1, 'stage="Parked", active=(missing)': 2}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and any("2 lead(s)" in w and "Parked" in w for w in warnings)
    assert "3 lead(s) with a status not in the status map counted as open" in str(got)
    assert latest_outcomes(cfg.path("outcome_history")).set_index("lead_id").loc["a", "outcome"] == "open"


def test_unmapped_under_open_is_quiet(tmp_path, caplog):
    cfg, crm = project(tmp_path, unmapped="open"), FakeCrm()
    crm.put("a", at(-5), stage="Parked")
    with caplog.at_level(logging.WARNING):
        got = pull(cfg, crm, T0)
    assert got.outcomes["open"] == 1 and not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- deleted records, reversals -----------------------------------------------------------------


def test_deleted_and_archived_records_are_mapped_by_their_fields(tmp_path):
    cfg, crm = project(tmp_path, unmapped="fail"), FakeCrm()
    crm.put("arch", at(-5), deleted=True, stage="New", active=False)  # an archived lost lead (Odoo)
    crm.put("gone", at(-4), deleted=True, stage="WON")  # a deleted won lead
    crm.put("kept", at(-3), stage="New", active="true")
    got = pull(cfg, crm, T0)
    assert got.read == 3 and got.deleted == 2
    rows = latest_outcomes(cfg.path("outcome_history")).set_index("lead_id")
    assert rows.loc["arch", ["outcome", "deleted"]].tolist() == ["lost", True]
    assert rows.loc["gone", ["outcome", "deleted"]].tolist() == ["converted", True]
    assert rows.loc["kept", ["outcome", "deleted"]].tolist() == ["open", False]
    crm.put("kept", at(1), deleted=True, stage="New", active="true")  # only the deletion changes: a change
    assert [r.lead_id for r in pull(cfg, crm, at(10)).rows] == ["kept"]


def test_a_lead_the_crm_no_longer_has_is_recorded_deleted_keeping_its_outcome(tmp_path):
    """A CRM that answers 404 for a lead it deleted (polled by id): the lead's last outcome and
    status stay, deleted, as of the pull; a lead no pull ever saw is skipped; and the time,
    ours and not the CRM's, never moves the watermark."""
    cfg, crm = project(tmp_path, unmapped="fail"), FakeCrm()
    crm.put("won", at(-5), stage="Won")
    pull(cfg, crm, T0)
    del crm.leads["won"]
    got = pull(cfg, crm, at(10), connector=FakeConnector(crm, late=[gone_record("won", at(10)), gone_record("never", at(10))]))
    assert got.gone_unknown == 1 and "1 scored lead(s) the CRM does not have, never seen by a pull: skipped" in str(got)
    history = read_outcome_history(cfg.path("outcome_history"))
    assert history["lead_id"].tolist() == ["won", "won"]
    last = history.iloc[-1]
    assert (last["outcome"], last["deleted"], last["status"]) == ("converted", True, '{"stage":"Won"}')
    assert last["modified_at"] == at(10) and watermark(cfg) == at(-5)
    assert last["outcome_at"] == at(-5)  # it converted then, not at the pull: it matures no second time
    again = pull(cfg, crm, at(20), connector=FakeConnector(crm, late=[gone_record("won", at(20))]))
    assert again.rows == [] and watermark(cfg) == at(-5)  # still gone: nothing new


def test_a_reversal_is_a_later_row_and_the_latest_wins(tmp_path):
    cfg, crm = project(tmp_path), FakeCrm()
    crm.put("a", at(-5), stage="Won")
    pull(cfg, crm, T0)
    crm.put("a", at(5), stage="Working")  # the won lead reopened
    pull(cfg, crm, at(10))
    crm.put("a", at(15), stage="Lost")
    pull(cfg, crm, at(20))
    history = read_outcome_history(cfg.path("outcome_history"))
    assert history["outcome"].tolist() == ["converted", "open", "lost"]
    assert latest_outcomes(cfg.path("outcome_history"))["outcome"].tolist() == ["lost"]


# -- failures: nothing written, the re-run gives the same bytes ---------------------------------


def _ten_changes(crm: FakeCrm, base: datetime = T0) -> None:
    for i in range(10):
        crm.put(f"n{i}", base + timedelta(minutes=1 + i // 3), stage=["Won", "Lost", "Working"][i % 3])


def test_an_interrupted_pull_writes_nothing_and_its_rerun_equals_an_uninterrupted_pull(tmp_path):
    runs = {}
    for name in ("interrupted", "straight"):
        cfg, crm = project(tmp_path / name), FakeCrm(page_size=2)
        crm.put("old", at(-5), stage="New")
        pull(cfg, crm, T0)
        _ten_changes(crm)  # 11 leads in the window: pages of 2, page 3 of 6 fails
        if name == "interrupted":
            before, mark = history_bytes(cfg), watermark(cfg)
            crm.fail_at_page = 3
            with pytest.raises(CrmError, match="HTTP 400"):
                pull(cfg, crm, at(30))
            assert history_bytes(cfg) == before and watermark(cfg) == mark == at(-5)
            crm.fail_at_page = None
        pull(cfg, crm, at(30))
        runs[name] = (history_bytes(cfg), (cfg.path("crm_state") / WATERMARK_FILE).read_bytes())
    assert runs["interrupted"] == runs["straight"]
    assert runs["straight"][0].count(b"\n") == 12  # header, old, 10 changes


def test_the_history_is_written_before_the_watermark(tmp_path, monkeypatch):
    """A pull that dies after writing the history but before the watermark re-reads the same
    window next time, and the history is still what one pull gives."""
    import leadscoring.crm.pull as pull_module

    cfg, crm = project(tmp_path), FakeCrm()
    _ten_changes(crm)
    with monkeypatch.context() as m:
        m.setattr(pull_module, "save_watermark", lambda *a, **k: (_ for _ in ()).throw(OSError("disk gone")))
        with pytest.raises(OSError, match="disk gone"):
            pull(cfg, crm, T0 + timedelta(hours=1))
    written = history_bytes(cfg)
    assert written.count(b"\n") == 11 and watermark(cfg) is None
    again = pull(cfg, crm, T0 + timedelta(hours=1))
    assert again.since == EPOCH and again.appended == 0 and history_bytes(cfg) == written
    assert watermark(cfg) == at(4)


def test_a_dry_run_writes_nothing(tmp_path):
    cfg, crm = project(tmp_path), FakeCrm()
    _ten_changes(crm)
    got = pull(cfg, crm, T0 + timedelta(hours=1), dry_run=True)
    assert got.appended == 10 and len(got.rows) == 10 and got.watermark == at(4)
    assert not cfg.path("outcome_history").exists() and not cfg.path("crm_state").exists()
    assert "Dry run: nothing written" in str(got) and "would be appended" in str(got)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("a,won,2026-03-01T08:55:00Z,,false,{}", "row 2 (line 3), field 'outcome': \"won\" is not converted, lost or open"),
        ("a,lost,yesterday,,false,{}", "row 2 (line 3), field 'modified_at': \"yesterday\" is not an ISO 8601"),
        ("a,lost,2026-03-01T08:55:00Z,,maybe,{}", "row 2 (line 3), field 'deleted': \"maybe\" is not true or false"),
        ("a,lost,2026-03-01T08:55:00Z,,false,[1]", "row 2 (line 3), field 'status': \"[1]\" is not a JSON object"),
        (",lost,2026-03-01T08:55:00Z,,false,{}", "row 2 (line 3), field 'lead_id': \"\" is empty"),
        ("a,lost,2026-03-01T08:55:00Z,,false,{},extra", "not a readable outcome history"),
    ],
)
def test_a_corrupt_history_is_a_one_line_error(tmp_path, capsys, monkeypatch, line, expected):
    cfg, crm = project(tmp_path), FakeCrm()
    crm.put("a", at(-5), stage="New")
    pull(cfg, crm, T0)
    path = cfg.path("outcome_history")
    path.write_text(path.read_text(encoding="utf-8") + line + "\n", encoding="utf-8")
    with pytest.raises(OutcomeHistoryError) as err:
        read_outcome_history(path)
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value) and "\n" not in str(err.value)
    monkeypatch.setattr(leadscoring.crm, "connector_for", lambda c: FakeConnector(crm), raising=False)
    monkeypatch.setattr(leadscoring.crm, "json_client", lambda c, **kw: crm.client(), raising=False)
    assert cli.main(["--config", str(cfg.source), "pull", "--no-progress"]) == 2  # bad input, not the CRM
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and expected in err_lines[0]


def test_a_history_not_utf8_far_down_or_with_a_field_too_many_names_the_row(tmp_path):
    """pandas counts a decoding error's byte from its own chunk, and reads a first column too
    many as an index: the message names the true row, and the extra fields."""
    path = tmp_path / "outcome_history.csv"
    good = "".join(f"l{i},open,2026-03-01T08:55:00Z,,false,{{}}\n" for i in range(5000))
    path.write_bytes((",".join(HISTORY_COLUMNS) + "\n" + good).encode() + b'x,open,2026-03-01T08:55:00Z,,false,{"s": "caf\xe9"}\n')
    with pytest.raises(
        OutcomeHistoryError, match=r"row 5001 \(line 5002\) is not UTF-8 text \(invalid continuation byte at byte \d+\)"
    ):
        read_outcome_history(path)
    path.write_text(",".join(HISTORY_COLUMNS) + "\n" + "a,open,2026-03-01T08:55:00Z,,false,{},x\n" * 3, encoding="utf-8")
    with pytest.raises(OutcomeHistoryError, match=r"row 1 \(line 2\) and the others have more fields than the header's 6"):
        read_outcome_history(path)


def test_a_history_with_a_wrong_header_is_refused(tmp_path):
    bad = tmp_path / "outcome_history.csv"
    bad.write_text("id,status\n1,won\n", encoding="utf-8")
    with pytest.raises(OutcomeHistoryError, match=r"the header is \['id', 'status'\], expected \['lead_id', 'outcome'"):
        read_outcome_history(bad)


# -- known ids, the command line ----------------------------------------------------------------


def test_known_ids_are_the_score_history_s_leads(tmp_path):
    cfg, crm = project(tmp_path), FakeCrm()
    append_scores(cfg.path("score_history"), ["7", "3", "7", "12"], [10, 20, 30, 40], "m1", "2026-02-01T00:00:00Z")
    connector = FakeConnector(crm)
    pull(cfg, crm, T0, connector=connector)
    assert connector.known_ids == ["12", "3", "7"]


def test_the_pull_command(tmp_path, capsys, monkeypatch):
    no_crm = write_project(tmp_path / "plain")
    assert cli.main(["--config", str(no_crm), "pull"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no crm: section" in err[0]

    cfg, crm = project(tmp_path / "p"), FakeCrm()
    _ten_changes(crm, datetime(2020, 1, 1, tzinfo=UTC))  # before the real clock the command reads
    monkeypatch.setattr(leadscoring.crm, "connector_for", lambda c: FakeConnector(crm), raising=False)
    monkeypatch.setattr(leadscoring.crm, "json_client", lambda c, **kw: crm.client(), raising=False)
    assert cli.main(["--config", str(cfg.source), "pull", "--dry-run", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "read 10 lead(s) modified from the beginning (first pull)" in out and "rest https://crm.example/api" in out
    assert not cfg.path("outcome_history").exists()
    assert cli.main(["--config", str(cfg.source), "pull", "--no-progress"]) == 0
    assert "10 change(s) appended" in capsys.readouterr().out
    crm.fail_at_page = 1
    assert cli.main(["--config", str(cfg.source), "pull", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("leadscoring pull: error: fake: GET /leads") and "HTTP 400" in err[0]


def test_a_missing_optional_package_names_the_extra_that_brings_it(tmp_path, capsys, monkeypatch):
    """``pull`` talks HTTP with httpx, which the ``serve`` extra installs: an install without it
    gets one line saying so, not a traceback."""

    def no_httpx(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'httpx'", name="httpx")

    monkeypatch.setattr("leadscoring.crm.pull.pull_outcomes", no_httpx)
    assert cli.main(["--config", str(project(tmp_path).source), "pull"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "leadscoring pull: error: needs the optional package httpx, which the 'serve' extra installs: "
        "pip install 'leadscoring[serve]'"
    ]
