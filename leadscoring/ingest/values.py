"""Value helpers shared by validation, profiling and cleaning: what counts as missing, a
function applied once per distinct value (lead columns have few), and dates as the export
writes them (:func:`parse_dates`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd


def is_missing(v: object) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and v != v)


def map_unique(values: object, fn: Callable[[object], object], dtype: object = object) -> np.ndarray:
    """``fn`` applied to every value, computed once per distinct value (missing → ``fn(None)``).

    Lead columns have few distinct values, so this costs one hash pass in C plus a few
    Python calls, whatever the number of leads.
    """
    arr = np.asarray(values, dtype=object)
    if len(arr) <= 64:  # a few leads (the scoring service): hashing costs more than it saves
        return np.array([fn(None if is_missing(v) else v) for v in arr], dtype=dtype)
    codes, uniques = pd.factorize(arr, use_na_sentinel=True)
    mapped = np.array([*(fn(u) for u in uniques), fn(None)], dtype=dtype)
    return mapped[codes]


#: A currency before or after an amount ("1234 €", "$ 99", "R$ 1.234,56", "US$ 10", "1.200 EUR"):
#: not part of the number. A sign, a dollar with its country's letters, or an ISO 4217 code.
_MONEY = r"(?:[€$£¥₹₽₺₩₪₫]|[A-Z]{1,3}\$|(?:EUR|USD|GBP|BRL|MXN|ARS|CLP|COP|PEN|CHF|CAD|AUD|JPY|INR)\b)"
CURRENCY = re.compile(rf"^\s*(-?)\s*{_MONEY}\s*|\s*{_MONEY}\s*$", re.I)  # "-R$ 5": the sign stays: "-5"


#: A space as thousands mark (``1 234,5``) is written by spreadsheets as a space, a no-break
#: space or a narrow no-break space: all three are that mark.
SPACES = (" ", "\u00a0", "\u202f")


def plain_number(t: str, decimal: str, thousands: str | None) -> str:
    """A number written in an export's notation as Python reads it: without a currency sign
    before or after the amount, without thousands marks (any kind of space when the mark is a
    space), ``decimal`` as ``.`` (``"1.234,5 €"`` -> ``"1234.5"``). The one reading of the
    notation, for the reader and for ``init``'s profile."""
    t = CURRENCY.sub(r"\1", t)
    if thousands:
        for mark in SPACES if thousands in SPACES else (thousands,):
            t = t.replace(mark, "")
    return t.replace(decimal, ".") if decimal != "." else t


_YEAR_FIRST = r"\s*\d{4}[-/.]"


def parse_dates(values: pd.Series, date_format: str | None = None) -> pd.Series:
    """Dates (``NaT`` for a value that is not one) from an export's column, written as
    ``date_format`` says: ``None`` or ``month_first`` (pandas' reading: ISO 8601, ``12/31/2024``
    month first), ``day_first`` (``31.12.2024``, ``31/12/2024 14:05``; a year-first value,
    ISO 8601, is still read as such), ``unix_seconds``, ``unix_milliseconds``, ``excel_serial``
    (days since 1899-12-30, a fraction for the time), or a strftime format. Values that are
    already dates are kept."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    if date_format in (None, "month_first"):
        return _mixed(values)
    if date_format in ("unix_seconds", "unix_milliseconds", "excel_serial"):
        number = pd.to_numeric(values, errors="coerce")
        if date_format == "excel_serial":
            return pd.to_datetime(number, unit="D", origin="1899-12-30", errors="coerce")
        return pd.to_datetime(number, unit="s" if date_format == "unix_seconds" else "ms", errors="coerce")
    if date_format == "day_first":
        year_first = values.astype("string").str.match(_YEAR_FIRST).fillna(False).to_numpy(dtype=bool)
        day_first = _mixed(values.where(~year_first), dayfirst=True)
        if not year_first.any():
            return day_first
        iso = _mixed(values.where(year_first))
        if day_first.dt.tz is not None or iso.dt.tz is not None:  # one side with offsets: both in UTC
            day_first, iso = pd.to_datetime(day_first, utc=True), pd.to_datetime(iso, utc=True)
        return day_first.where(~year_first, iso)
    return pd.to_datetime(values, errors="coerce", format=date_format)


def _mixed(values: pd.Series, dayfirst: bool = False) -> pd.Series:
    """pandas' reading of each value; offsets that differ (summer and winter time, ``Z`` beside
    naive times) are read in UTC, which pandas refuses to mix otherwise."""
    try:
        return pd.to_datetime(values, errors="coerce", format="mixed", dayfirst=dayfirst)
    except ValueError:
        return pd.to_datetime(values, errors="coerce", format="mixed", dayfirst=dayfirst, utc=True)
