"""What every connector shares (``leadscoring.crm.connector``): whole-second windows, the times
CRMs write, each lead once in (modified_at, lead_id) order, and one-line ``crm.options`` errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from leadscoring.config import ConfigError
from leadscoring.crm import connector
from leadscoring.crm.connector import Record
from leadscoring.crm.http import CrmError

T = datetime(2026, 3, 2, 9, 0, 0, 250_000, tzinfo=UTC)


def test_whole_second_windows_and_iso_text() -> None:
    assert connector.iso_utc(T) == "2026-03-02T09:00:00Z" and connector.iso_utc(T, up=True) == "2026-03-02T09:00:01Z"
    assert connector.iso_utc(T.replace(microsecond=0), up=True) == "2026-03-02T09:00:00Z"  # already whole: not moved
    assert connector.iso_utc(T.astimezone(timezone(timedelta(hours=2)))) == "2026-03-02T09:00:00Z"
    assert connector.iso_utc(T.replace(tzinfo=None)) == "2026-03-02T09:00:00Z"  # naive is UTC
    low, high = connector.second_window(T, T + timedelta(hours=1))
    assert (connector.iso_utc(low), connector.iso_utc(high)) == ("2026-03-02T09:00:00Z", "2026-03-02T10:00:01Z")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-09-11T13:27:39.356Z", datetime(2024, 9, 11, 13, 27, 39, 356_000, tzinfo=UTC)),  # HubSpot
        ("2024-01-15T10:30:00.000+0000", datetime(2024, 1, 15, 10, 30, tzinfo=UTC)),  # Salesforce
        ("2024-01-15", datetime(2024, 1, 15, tzinfo=UTC)),  # a date: midnight UTC
        ("2026-03-02 10:00:00", datetime(2026, 3, 2, 10, tzinfo=UTC)),  # Odoo: naive UTC
        ("1726061259356", datetime(2024, 9, 11, 13, 27, 39, 356_000, tzinfo=UTC)),  # epoch milliseconds
        (1726061259, datetime(2024, 9, 11, 13, 27, 39, tzinfo=UTC)),  # epoch seconds
        ("yesterday", None),
        (True, None),
        (None, None),
    ],
)
def test_parse_time_reads_every_crm_s_form(value: object, expected: datetime | None) -> None:
    assert connector.parse_time(value) == expected


def test_a_required_time_that_is_none_is_one_line_naming_crm_lead_and_field() -> None:
    with pytest.raises(CrmError, match=r"^Odoo: lead 7: write_date is 'soon', not a time \(ISO 8601") as err:
        connector.read_time("soon", "Odoo: lead 7", "write_date")
    assert "\n" not in str(err.value)


def test_each_lead_once_latest_then_last_read_in_time_then_id_order() -> None:
    live = Record("b", T, {"s": "open"})
    archived = Record("b", T, {"s": "open"}, deleted=True)  # read after the live copy, same time
    older = Record("a", T - timedelta(minutes=1), {"s": "won"})
    newer = Record("a", T + timedelta(minutes=1), {"s": "lost"})
    assert connector.latest_by_lead([newer, live, older, archived, Record("c", T, {})]) == [archived, Record("c", T, {}), newer]


def test_options_errors_start_with_the_key_and_stay_on_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^crm\.options\.db: unknown option for odoo; known: model, database$"):
        connector.check_option_keys("odoo", {"db": "x", "model": "crm.lead"}, ("model", "database"))
    with pytest.raises(ConfigError, match=r"^crm\.options\.entity: unknown option for pipedrive; it takes none$"):
        connector.check_option_keys("pipedrive", {"entity": "deals"}, ())
    with pytest.raises(ConfigError, match=r"^crm\.options\.database: expected a database name, got 'a\\nb'$"):
        connector.text_option({"database": "a\nb"}, "database", None, r"\w+", "a database name")
    assert connector.text_option({}, "database", None, r"\w+", "a database name") is None
    assert connector.text_option({}, "api_version", "v9.2", r"v\d+\.\d+", "a version") == "v9.2"
    with pytest.raises(ConfigError, match=r"^crm\.options\.properties: expected distinct names, got \['a', 'a'\]$"):
        connector.text_list_option({"properties": ["a", "a"]}, "properties", ["x"], r"\w+", "distinct names", distinct=True)
    with pytest.raises(ConfigError, match=r"^crm\.options\.fields: expected names, got 'Name'$"):
        connector.text_list_option({"fields": "Name"}, "fields", [], r"\w+", "names")
