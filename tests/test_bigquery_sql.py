"""The behavioural features on BigQuery (issue "Behavioural events -> lead features", item 3):
the DuckDB templates transpiled to BigQuery Standard SQL, checked by parsing it and by running
it back on DuckDB (sqlglot BigQuery -> DuckDB) against the GA4 sample of test_events, through
a fake BigQuery client."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import duckdb
import pandas as pd
import pytest
import yaml

from leadscoring.errors import LeadDataError
from leadscoring.events.bigquery import bigquery_sql, main, run_bigquery
from leadscoring.events.engine import compute_features
from leadscoring.events.sql import GA4_JSON_COLUMNS
from tests.test_events import DAY, EVENTS, FEATURES, LEADS, config, ga4_event

sqlglot = pytest.importorskip("sqlglot")
from sqlglot import exp  # noqa: E402

TABLE = "proj.analytics.events_*"
QUOTED = "it's a \\ test"  # an event name with a quote and a backslash
MORE = [{"name": "amount_30d", "kind": "sum", "param": "amount", "days": 30}, {"name": "quoted", "kind": "count", "event": QUOTED}]
NAMES = [f["name"] for f in FEATURES + MORE]
# Day files of the export: the last two lie outside 2026-01-01..2026-01-31 and must be skipped
# even though their events precede the cut-offs (an intraday table's suffix starts with text).
DAYS = {
    "20260101": [*EVENTS[:5], ga4_event("v1", 3 * DAY, QUOTED, 2)],
    "20260110": EVENTS[5:],
    "20260201": [ga4_event("v1", 1 * DAY, "page_view", 7)],
    "intraday_20260105": [ga4_event("v2", 1 * DAY, "file_download", 8)],
}
IN_RANGE = ("20260101", "20260110")


def _json_file(tmp_path, suffix: str) -> str:
    path = tmp_path / "ga4" / f"events_{suffix}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(json.dumps(e) for e in DAYS[suffix]) + "\n")
    return str(path)


@pytest.fixture()
def ga4(tmp_path):
    for suffix in DAYS:
        _json_file(tmp_path, suffix)
    return config(tmp_path, "ga4/events_202601*.json", features=FEATURES + MORE)


def parsed(sql: str) -> exp.Expression:
    return sqlglot.parse_one(sql, read="bigquery")


class FakeJob:
    def __init__(self, client: FakeClient, sql: str) -> None:
        self.client, self.sql = client, sql

    def result(self) -> FakeJob:
        return self

    def to_dataframe(self) -> pd.DataFrame:
        duck = sqlglot.transpile(self.sql, read="bigquery", write="duckdb")[0]
        return self.client.con.execute(duck).df().iloc[::-1]  # rows in reverse: alignment is by lead_row


class FakeClient:
    """Records the calls; runs the BigQuery SQL on DuckDB (transpiled back by sqlglot)."""

    project = "proj"

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con, self.queries, self.loads, self.deleted = con, [], [], []

    def query(self, sql: str) -> FakeJob:
        self.queries.append(sql)
        return FakeJob(self, sql)

    def load_table_from_dataframe(self, frame: pd.DataFrame, table_id: str) -> FakeJob:
        self.loads.append((table_id, frame.copy()))
        self.con.register("upload", frame)
        project, dataset, name = table_id.split(".")
        self.con.execute(f'CREATE TABLE {project}.{dataset}."{name}" AS SELECT * FROM upload')
        return FakeJob(self, "")

    def delete_table(self, table_id: str, not_found_ok: bool = False) -> None:
        self.deleted.append(table_id)


def warehouse(tmp_path) -> duckdb.DuckDBPyConnection:
    """DuckDB standing in for BigQuery: the day files as one table named like the wildcard
    table, with their ``_TABLE_SUFFIX``."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("ATTACH ':memory:' AS proj")
    con.execute("CREATE SCHEMA proj.analytics")
    columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in GA4_JSON_COLUMNS.items()) + "}"
    parts = [
        f"SELECT *, '{s}' AS _TABLE_SUFFIX FROM read_json('{_json_file(tmp_path, s)}', "
        f"format = 'newline_delimited', columns = {columns})"
        for s in DAYS
    ]
    con.execute('CREATE TABLE proj.analytics."events_*" AS ' + " UNION ALL ".join(parts))
    return con


def test_the_query_is_bigquery_sql():
    cfg = config(".", "unused", features=FEATURES + MORE).events
    sql = bigquery_sql(cfg, TABLE, "proj.scratch.leads", "2026-01-01", "2026-01-31")
    tree = parsed(sql)
    assert [s.alias_or_name for s in tree.selects] == ["lead_row", *NAMES]
    assert {t.sql("bigquery") for t in tree.find_all(exp.Table)} == {"`proj.analytics.events_*` AS e", "`proj.scratch.leads` AS l"}
    assert "_TABLE_SUFFIX BETWEEN '20260101' AND '20260131'" in sql
    assert "FROM UNNEST(e.event_params) AS p" in sql and "TIMESTAMP_MICROS(e.event_timestamp)" in sql
    assert "TIMESTAMP_DIFF(TIMESTAMP_TRUNC(l.cutoff, SECOND), TIMESTAMP_TRUNC(ev.ts, SECOND), SECOND)" in sql
    assert "SAFE_CAST(p.value.string_value AS FLOAT64)" in sql and "INSTR(ev.page, '/rates')" in sql
    for duckdb_only in (
        "read_json",
        "read_parquet",
        "make_timestamp",
        "date_diff('",
        "DATE_DIFF(",
        "TRY_CAST",
        "VARCHAR",
        "DATETIME",
        "AS t(p)",
        '"',
    ):
        assert duckdb_only.lower() not in sql.lower(), duckdb_only
    literals = {lit.this for lit in tree.find_all(exp.Literal) if lit.is_string}
    assert QUOTED in literals and "it's a \\\\ test" not in literals  # the quote and backslash survive as such


def test_days_and_sources_choose_the_filter():
    cfg = config(".", "unused", features=FEATURES).events
    one_day = bigquery_sql(cfg, "`proj.analytics.events_20260105`", "d.leads", "20260105", "2026-01-05")
    assert "e.event_date BETWEEN '20260105' AND '20260105'" in one_day and "_TABLE_SUFFIX" not in one_day
    tables = {t.name: t for t in parsed(bigquery_sql(cfg, TABLE, "d.leads", None, None)).find_all(exp.Table)}
    assert tables["events_*"].parent_select.args.get("where") is None  # no days: the whole export
    dated = parsed(bigquery_sql(cfg, TABLE, "d.leads", "2026-01-01", "2026-01-02"))
    assert next(t for t in dated.find_all(exp.Table) if t.name == "events_*").parent_select.args["where"] is not None
    for bad, message in (
        ({"start": "2026-02-01", "end": "2026-01-01"}, "after end"),
        ({"start": "soon", "end": "2026-01-01"}, "is not a day"),
        ({"start": "2026-01-01", "end": None}, "both"),
        ({"table": "p.d.t`; DROP TABLE x", "start": None, "end": None}, "not a table name"),
    ):
        with pytest.raises(LeadDataError, match=message):
            bigquery_sql(cfg, bad.pop("table", TABLE), "d.leads", **bad)


def test_flat_logs_read_a_table_by_their_time_column():
    cfg = config(".", "unused", format="flat", key="visitor", session_column="session", features=FEATURES).events
    sql = bigquery_sql(cfg, "proj.crm.activity", "proj.scratch.leads", "2026-01-01", "2026-01-31")
    parsed(sql)
    assert "FROM `proj.crm.activity` AS e" in sql and "_TABLE_SUFFIX" not in sql
    assert (
        "CAST(e.`timestamp` AS TIMESTAMP) >= CAST('2026-01-01 00:00:00' AS TIMESTAMP)\n"
        "    AND CAST(e.`timestamp` AS TIMESTAMP) < CAST('2026-02-01 00:00:00' AS TIMESTAMP)"
    ) in sql
    assert "CAST(e.`session` AS STRING) AS session_id" in sql and "DATETIME" not in sql


def test_the_bigquery_sql_gives_duckdbs_features(ga4, tmp_path):
    """The round trip: run on DuckDB, the BigQuery query gives the features compute_features
    gives from the same files; days outside the range are not read."""
    client = FakeClient(warehouse(tmp_path))
    got = run_bigquery(ga4, LEADS, table=TABLE, start="2026-01-01", end="2026-01-31", client=client)
    want = compute_features(ga4, LEADS, files=[_json_file(tmp_path, s) for s in IN_RANGE])
    pd.testing.assert_frame_equal(got, want)
    assert list(got.index) == list(LEADS.index) and list(got.columns) == NAMES
    a, b = got.iloc[0], got.iloc[1]
    assert a["views"] == 2 and a["hesitation_s"] == 90.0 and a["quoted"] == 1 and a["amount_30d"] == 4000.0
    assert b["downloads"] == 1  # the intraday table's download is not counted
    create, features = client.queries
    ((scratch, frame),) = client.loads
    assert scratch.startswith("proj.analytics.leadscoring_leads_") and client.deleted == [scratch]
    assert create.startswith(f"CREATE TABLE `{scratch}` (lead_row INT64, visitor STRING, cutoff TIMESTAMP)")
    assert "INTERVAL 1 DAY" in create and f"FROM `{scratch}` AS l" in features
    assert list(frame["visitor"]) == ["v1", "v2", "nobody"] and str(frame["cutoff"].dt.tz) == "UTC"
    assert frame["cutoff"].iloc[0] == pd.Timestamp("2026-01-10 12:00", tz="UTC")


def test_flat_round_trip(tmp_path):
    rows = pd.DataFrame(
        {
            "visitor": [e["user_pseudo_id"] for e in EVENTS],
            "timestamp": pd.to_datetime([e["event_timestamp"] for e in EVENTS], unit="us"),
            "activity": [e["event_name"] for e in EVENTS],
            "session": [str(e["event_params"][0]["value"]["int_value"]) for e in EVENTS],
        }
    )
    rows.to_csv(tmp_path / "activity.csv", index=False)
    cfg = config(
        tmp_path,
        "activity.csv",
        format="flat",
        key="visitor",
        session_column="session",
        features=[f for f in FEATURES if "param" not in f],
    )
    con = warehouse(tmp_path)
    con.execute("CREATE SCHEMA proj.crm")
    early = pd.DataFrame(
        {"visitor": ["v2"], "timestamp": [pd.Timestamp("2025-12-31")], "activity": ["file_download"], "session": ["0"]}
    )  # before the first day: not read
    con.register("rows", pd.concat([rows, early]))
    con.execute("CREATE TABLE proj.crm.activity AS SELECT * FROM rows")
    got = run_bigquery(
        cfg,
        LEADS,
        table="proj.crm.activity",
        start="2026-01-01",
        end="2026-01-31",
        scratch_dataset="proj.analytics",
        client=FakeClient(con),
    )
    pd.testing.assert_frame_equal(got, compute_features(cfg, LEADS))
    assert got.iloc[1]["downloads"] == 1 and got.iloc[0]["sessions"] == 3


def test_without_the_client_library_the_error_says_what_to_install(ga4):
    try:
        installed = importlib.util.find_spec("google.cloud.bigquery") is not None
    except ModuleNotFoundError:
        installed = False
    if installed:
        pytest.skip("google-cloud-bigquery is installed")
    with pytest.raises(LeadDataError, match=r'pip install "leadscoring\[bigquery\]"'):
        run_bigquery(ga4, LEADS, table=TABLE, start="2026-01-01", end="2026-01-31")


def test_the_module_prints_the_query(tmp_path, capsys):
    conf = {
        "root": "..",
        "paths": {"raw_data": "raw/export.csv"},
        "data": {"id_column": "Lead", "target_column": "Won", "date_column": "Created", "columns": {"numeric": ["Age"]}},
        "events": {"path": "ga4/*.json", "lead_key": "Client", "features": FEATURES},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(conf), encoding="utf-8")
    assert main(["--config", str(tmp_path / "config.yaml"), "--table", TABLE, "--start", "2026-01-01", "--end", "2026-01-31"]) == 0
    out = capsys.readouterr().out
    assert [s.alias_or_name for s in parsed(out).selects] == ["lead_row", *[f["name"] for f in FEATURES]]
    assert "FROM `proj.analytics.leadscoring_leads` AS l" in out and out.rstrip().endswith(";")
    assert main(["--config", str(tmp_path / "config.yaml"), "--table", TABLE, "--start", "2026-01-01"]) == 2
    assert "both" in capsys.readouterr().err


def test_importing_the_module_loads_neither_sqlglot_nor_google():
    code = (
        "import sys, leadscoring.events.bigquery; print(sorted(m for m in sys.modules if m == 'sqlglot' or m.startswith('google')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
