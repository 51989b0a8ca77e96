"""The configured layout of a lead, as one schema for every way leads arrive.

:class:`LeadSchema` is built from the configuration. It holds the rules for one value (an
id, a number, a yes/no answer, the outcome) and applies them to whole frames (a file, a
chunk, a dask partition: :meth:`LeadSchema.validate`) and to API requests (the pydantic
model of :meth:`LeadSchema.request_model`), so both refuse the same things with the same
words. A frame's problems raise :class:`LeadDataError` with a one-line message naming the
column, the offending values and the lines of the file where they occur, or, when the
caller passes :class:`BadRows` (``scoring.bad_rows: set_aside``), the rows with problems are
left out of the frame and recorded there, each with its line and its first problem.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel

from leadscoring.config import ProjectConfig
from leadscoring.errors import LeadDataError
from leadscoring.ingest.reader import RowLocator
from leadscoring.ingest.values import is_missing, map_unique, parse_dates, plain_number

#: How many offending values/lines an error message lists before "...".
MAX_EXAMPLES = 5


def _examples(values: Sequence[object], rows: Sequence[str]) -> str:
    shown = [f"{v!r} ({r})" for v, r in zip(values[:MAX_EXAMPLES], rows[:MAX_EXAMPLES], strict=False)]
    more = f" and {len(values) - MAX_EXAMPLES} more" if len(values) > MAX_EXAMPLES else ""
    return ", ".join(shown) + more


class _RowLabels:
    """Where a row is, for error messages, computed only for the rows a message names:
    ``rows`` maps record numbers (the frame's index) to labels such as "line 7"."""

    def __init__(self, index: pd.Index, rows: RowLocator | None) -> None:
        self.index = np.asarray(index)
        self.rows = rows

    def __getitem__(self, mask: np.ndarray) -> list[str]:
        return self._labels(self.index[mask][: MAX_EXAMPLES + 1])

    def all(self, mask: np.ndarray) -> list[str]:
        """The label of every row of ``mask`` (the rows set aside)."""
        return self._labels(self.index[mask])

    def _labels(self, picked: np.ndarray) -> list[str]:
        return self.rows([int(i) for i in picked]) if self.rows is not None else [f"row {i}" for i in picked]


@dataclass
class BadRows:
    """The rows a validation set aside instead of refusing the whole frame: each one's record
    number (the frame's index), where it is in the file ("line 12") and its first problem
    ("column 'visits' must be numeric but has text value(s): 'many'"). One instance collects
    across the chunks of a file."""

    records: list[int] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rows: list[pd.DataFrame] = field(default_factory=list)  # the rows as read
    #: Keep the line and problem of the first ``limit`` rows in the file only, and not the rows
    #: (``validate`` lists a few and counts the rest: memory stays bounded on a file of bad rows).
    limit: int | None = None
    count: int = 0  # every row set aside, kept or not

    def __len__(self) -> int:
        return self.count

    def add(self, record: int, line: str, problem: str) -> None:
        """One row set aside: its record number, where it is, its first problem."""
        self.count += 1
        self.records.append(int(record))
        self.lines.append(line)
        self.problems.append(problem)
        if self.limit is not None and len(self.records) > 2 * self.limit:
            self._trim()

    def extend(self, other: BadRows) -> None:
        """Add ``other``'s rows (another chunk's) to these."""
        for record, line, problem in zip(other.records, other.lines, other.problems, strict=True):
            self.add(record, line, problem)
        if self.limit is None:
            self.rows += other.rows

    def _trim(self) -> None:
        """Only the ``limit`` rows first in the file."""
        assert self.limit is not None
        keep = sorted(range(len(self.records)), key=self.records.__getitem__)[: self.limit]
        self.records, self.lines, self.problems = ([xs[i] for i in keep] for xs in (self.records, self.lines, self.problems))

    def first(self) -> str:
        """The first row set aside (in the file) and its problem, for a one-line message."""
        if not self.records:
            return ""
        i = int(np.argmin(self.records))
        return f"{self.lines[i]}: {self.problems[i]}"

    def table(self) -> pd.DataFrame:
        """The rows set aside in file order, for a person to read and fix: ``line``,
        ``problem``, then the row as the file has it."""
        if self.limit is not None:
            self._trim()
        head = pd.DataFrame({"line": self.lines, "problem": self.problems}, index=pd.Index(self.records))
        rows = pd.concat(self.rows).astype(object) if self.rows else None
        return (pd.concat([head, rows], axis=1) if rows is not None else head).sort_index()


def repeated_id(id_column: str) -> str:
    """The problem of a row set aside for an id an earlier row of the file has."""
    return f"column '{id_column}' (id) repeats the id of an earlier line"


def check_bad_share(origin: str, bad: int, total: int, max_share: float, first: str) -> None:
    """Refuse a file whose rows set aside are more than ``max_share`` (``scoring.max_bad_share``)
    of its ``total`` rows (a file in another layout, not a few slips), or are all of them.
    ``first`` names the first."""
    if bad and bad == total:
        raise LeadDataError(f"{origin}: every one of its {total} rows has a problem; the first: {first}")
    if bad and bad > max_share * total:
        raise LeadDataError(
            f"{origin}: {bad} of {total} rows have problems ({bad / total:.1%}), more than "
            f"scoring.max_bad_share ({max_share:.1%}): is it in the configured layout? The first: {first}"
        )


class _Refusals:
    """The rows one frame's checks refuse. Without ``bad_rows``, the first problem raises a
    one-line :class:`LeadDataError` (its values and lines). With it, checks go on, each refused
    row keeps its first problem, :attr:`refused` marks the rows to leave out and
    :meth:`finish` records them there."""

    def __init__(self, origin: str, labels: _RowLabels, n: int, bad_rows: BadRows | None) -> None:
        self.origin, self.labels, self.bad_rows = origin, labels, bad_rows
        self.refused = np.zeros(n, dtype=bool)
        self.problems: dict[int, str] = {}  # row position -> its first problem (with bad_rows)

    def refuse(
        self, bad: np.ndarray, what: str, values: Sequence[object] | None = None, hint: str = "", joiner: str = ": "
    ) -> None:
        """Refuse the rows of mask ``bad`` (their ``values`` as found): ``what`` is the problem
        ("column 'x' must be numeric but has text value(s)"), ``joiner`` what comes before the
        values and lines in a message, ``hint`` what to do about it."""
        if not bad.any():
            return
        if self.bad_rows is None:
            found = _examples(list(values), self.labels[bad]) if values is not None else ", ".join(self.labels[bad][:MAX_EXAMPLES])
            raise LeadDataError(f"{self.origin}: {what}{joiner}{found}{hint}")
        new = bad & ~self.refused
        self.refused |= bad
        shown = dict(zip(np.flatnonzero(bad), values, strict=True)) if values is not None else {}
        for i in np.flatnonzero(new):
            self.problems[int(i)] = f"{what}{joiner}{shown[i]!r}" if values is not None else what

    def finish(self) -> None:
        """Record the rows refused in ``bad_rows``, in file order, each with its line: found
        in one pass over the file, whatever the order the checks refused them in."""
        if self.bad_rows is None or not self.problems:
            return
        lines = self.labels.all(self.refused)
        for i, line in zip(np.flatnonzero(self.refused), lines, strict=True):
            self.bad_rows.add(self.labels.index[i], line, self.problems[int(i)])


def text(v: object) -> str | None:
    """Stripped text; None for missing or blank."""
    if is_missing(v):
        return None
    t = str(v).strip()
    return t or None


class LeadSchema:
    """The rules a lead must meet (see module docstring)."""

    def __init__(self, cfg: ProjectConfig) -> None:
        d = cfg.model_data  # the behavioural features are numeric columns (optional: computed from events)
        self.id_column, self.target_column = d.id_column, d.target_column
        self.numeric, self.categorical, self.yes_no = list(d.columns.numeric), list(d.columns.categorical), list(d.columns.yes_no)
        self.ranges = {c: d.ranges.get(c, (None, None)) for c in self.numeric}
        self.missing_codes = {c: sorted(set(map(float, v))) for c, v in d.numeric_missing.items()}
        self.id_from_row_number = d.id_from_row_number
        self.date_column, self.date_format = d.date_column, d.date_format
        self.decimal, self.thousands = d.decimal, d.thousands
        self.positive, self.negative = d.positive_value, d.negative_value
        self.yes_no_spellings = [*d.yes_values, *d.no_values, *d.missing_values]
        self._known = {v.casefold() for v in self.yes_no_spellings}
        self._missing = {v.casefold() for v in d.missing_values}  # "n/a", "-": missing in any column
        self.allow_extra_columns = d.allow_extra_columns
        self.encoding = d.encoding
        # Behavioural features are computed from events (absent from raw exports, checked as
        # numbers when present); the export's visitor key column is kept as text to find them.
        self.event_columns = set(cfg.event_columns)
        key = cfg.events.lead_key if cfg.events else None
        self.visitor_column = key if key not in (None, d.id_column) else None

    # -- one value ------------------------------------------------------------------------
    def number(self, v: object) -> float:
        """A number from text in the export's notation (NaN when missing); ValueError for
        text that is not a number, for true/false and for infinite or NaN values."""
        if isinstance(v, bool):
            raise ValueError("must be a number, not true/false")
        if isinstance(v, int | float):  # (true/false refused above)
            x = float(v)
        else:
            t = text(v)
            if t is None or t.casefold() in self._missing:
                return math.nan
            try:
                x = float(plain_number(t, self.decimal, self.thousands))
            except ValueError:
                raise ValueError("must be numeric") from None
        if not math.isfinite(x):
            raise ValueError("must be a finite number")
        return x

    def outside(self, col: str, x: float) -> bool:
        lo, hi = self.ranges[col]
        return (lo is not None and x < lo) or (hi is not None and x > hi)

    def yes_no_ok(self, v: str | None) -> bool:
        return v is None or v.casefold() in self._known

    def lead_id(self, v: object) -> str:
        """An id as text (whole numbers as their digits); ValueError when empty, true/false or
        a fractional number."""
        if isinstance(v, bool):
            raise ValueError("must be a non-blank string or an integer (not true/false or a decimal number)")
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            if not v.is_integer():
                raise ValueError("must be a non-blank string or an integer (not true/false or a decimal number)")
            return str(int(v))
        t = text(v)
        if t is None:
            raise ValueError("must not be empty or blank")
        return t

    # -- a frame (file, chunk, partition) -------------------------------------------------
    def check_columns(self, columns: Sequence[str], origin: str, require_target: bool, may_lack: Collection[str] = ()) -> None:
        expected = [c for c in (*self.numeric, *self.categorical, *self.yes_no) if c not in self.event_columns]
        if self.visitor_column:
            expected.append(self.visitor_column)
        if not self.id_from_row_number:
            expected.insert(0, self.id_column)
        elif self.id_column in columns:
            raise LeadDataError(
                f"{origin}: has a column '{self.id_column}', the name configured for the row "
                "numbers (data.id_from_row_number); configure it as the id or rename id_column"
            )
        missing = [c for c in expected if c not in columns and c not in may_lack]
        if require_target and self.target_column not in columns:
            missing.append(self.target_column)
        if missing:
            raise LeadDataError(
                f"{origin}: missing required column(s) {missing}; found {list(columns)}{self._encoding_hint(missing, columns)}"
            )
        if self.date_column is not None and require_target and self.date_column not in columns:
            raise LeadDataError(
                f"{origin}: missing the date column '{self.date_column}' (data.date_column), "
                "needed to evaluate on the most recent leads"
            )
        extra = [c for c in columns if c not in {*expected, *self.event_columns, self.target_column, self.date_column}]
        if extra and not self.allow_extra_columns:
            raise LeadDataError(
                f"{origin}: unexpected column(s) {extra}; add them to the configuration's columns "
                "or set data.allow_extra_columns: true"
            )
        dupes = sorted({c for c in columns if list(columns).count(c) > 1})
        if dupes:
            raise LeadDataError(f"{origin}: column(s) {dupes} appear more than once")

    def _encoding_hint(self, missing: Sequence[str], columns: Sequence[str]) -> str:
        """A hint when a missing column is in the file under its UTF-8 bytes read in the
        configured encoding ('Valore (â‚¬)' for 'Valore (€)'): the file is UTF-8."""
        found = set(columns)
        for name in missing:
            try:
                garbled = name.encode("utf-8").decode(self.encoding)
            except (UnicodeError, LookupError):
                continue
            if garbled != name and garbled in found:
                return (
                    f" — '{garbled}' is '{name}' written in UTF-8: save the file in {self.encoding} "
                    "(data.encoding), as the export is, or set data.encoding: utf-8"
                )
        return ""

    def validate(
        self,
        df: pd.DataFrame,
        *,
        require_target: bool = True,
        origin: str = "input",
        rows: RowLocator | None = None,
        may_lack: Collection[str] = (),
        bad_rows: BadRows | None = None,
    ) -> pd.DataFrame:
        """Check ``df`` and return a typed copy: the id as text, numeric columns as float,
        categorical and yes/no columns as stripped text (blank → missing; placeholders such
        as ``Select`` are kept for the cleaner), the target (if asked for) as 0/1. Columns
        outside the configuration are dropped if allowed, else rejected. ``rows`` names the
        records in messages (default: "row <index>"). Configured columns in ``may_lack`` (those
        a model does not read) may be absent: they are then empty.

        A problem of the whole frame (a missing column, no rows) always raises. A problem of a
        row raises too, unless ``bad_rows`` is given: the row is then left out of the result
        and recorded in ``bad_rows``."""
        if df.shape[0] == 0:
            raise LeadDataError(f"{origin}: no leads (the file has a header but no rows)")
        df = df.set_axis([str(c).strip() for c in df.columns], axis=1)  # copy-on-write: no data copied
        self.check_columns(list(df.columns), origin, require_target, may_lack)
        read = list(df.columns)  # (a row set aside is written with these, as the file has it)
        absent = [c for c in may_lack if c not in df.columns]
        if absent:
            df = df.assign(**dict.fromkeys(absent))
        found = _Refusals(origin, _RowLabels(df.index, rows), len(df), bad_rows)
        out: dict[str, np.ndarray] = {}  # one frame built at the end: inserting column by column fragments it
        out[self.id_column] = self._lead_ids(df, found)
        if self.visitor_column:
            out[self.visitor_column] = map_unique(df[self.visitor_column], text)
        for col in self.numeric:
            if col in df.columns or col not in self.event_columns:
                out[col] = self._numbers(df[col], col, found)
        for col in self.categorical:
            out[col] = map_unique(df[col], text)
        for col in self.yes_no:
            out[col] = self._yes_no(df[col], col, found)
        if require_target and self.target_column in df.columns:
            out[self.target_column] = self._target(df[self.target_column], found)
        if self.date_column is not None and self.date_column in df.columns:
            out[self.date_column] = self._dates(df[self.date_column], found)
        if bad_rows is not None and not self.id_from_row_number:
            # A repeated id, once every other check is done: the first of its rows that is
            # scored keeps it, as when the repeat is in a later chunk (IdTracker).
            ids = pd.Series(out[self.id_column]).where(~found.refused)
            dup = (~found.refused) & ids.duplicated(keep="first").to_numpy()
            found.refuse(dup, repeated_id(self.id_column), out[self.id_column][dup])
        leads = pd.DataFrame(out, index=pd.RangeIndex(len(df)))
        if found.refused.any():  # (only with bad_rows: else the first problem raised)
            assert bad_rows is not None
            found.finish()
            if bad_rows.limit is None:  # (a limited record keeps no rows)
                bad_rows.rows.append(df.loc[found.refused, read])
            leads = leads[~found.refused].reset_index(drop=True)
        return leads

    def _dates(self, s: pd.Series, found: _Refusals) -> np.ndarray:
        values = s.where(s.astype("string").str.strip() != "") if not pd.api.types.is_datetime64_any_dtype(s) else s
        dates = parse_dates(values, self.date_format)
        bad = (dates.isna() & values.notna()).to_numpy()
        if bad.any():  # (the values as found only for a message)
            written = f" written as {self.date_format} (data.date_format)" if self.date_format else ""
            found.refuse(
                bad, f"date column '{self.date_column}' has value(s) that are not dates{written}", np.asarray(s, dtype=object)[bad]
            )
        return dates.to_numpy()

    def lead_ids(self, df: pd.DataFrame, origin: str = "input", rows: RowLocator | None = None) -> np.ndarray:
        """Each row's lead id (``df``'s index is the record number): with
        ``data.id_from_row_number`` the record's number from 1, else the id column's ids
        (stripped text, whole numbers as their digits). Empty, malformed or duplicate ids are a
        one-line :class:`LeadDataError` naming the rows."""
        return self._lead_ids(df, _Refusals(origin, _RowLabels(df.index, rows), len(df), None))

    def _lead_ids(self, df: pd.DataFrame, found: _Refusals) -> np.ndarray:
        if self.id_from_row_number:  # the n-th lead of the export
            return np.array([str(int(i) + 1) for i in df.index], dtype=object)
        return self._ids(df[self.id_column], found)

    def column_ids(self, df: pd.DataFrame, origin: str = "input", rows: RowLocator | None = None) -> np.ndarray:
        """The ids written in ``df``'s id column, by the rule of :meth:`lead_ids`, whatever
        ``data.id_from_row_number`` says (a file of outcomes names the leads it is about)."""
        return self._ids(df[self.id_column], _Refusals(origin, _RowLabels(df.index, rows), len(df), None))

    def _id_or_none(self, v: object) -> str | None:
        """:meth:`lead_id`, or None for a value that is no id (a typed export's id column)."""
        try:
            return self.lead_id(v)
        except ValueError:
            return None

    def _ids(self, s: pd.Series, found: _Refusals) -> np.ndarray:
        as_text = pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty")
        blank = np.zeros(len(s), dtype=bool)
        if as_text:
            blank = (s.isna() | (s.astype("string").str.strip() == "")).to_numpy()
            found.refuse(blank, f"column '{self.id_column}' (id) is empty", joiner=" at ")
        # text ids stripped in one vectorised pass; other types (parquet numbers) one by one
        texts = s.astype("string").str.strip().to_numpy(dtype=object) if as_text else None
        ids = texts if texts is not None else map_unique(s.to_numpy(dtype=object), self._id_or_none)
        bad = np.fromiter((v is None for v in ids), dtype=bool, count=len(ids)) & ~blank
        if bad.any():
            found.refuse(
                bad,
                f"column '{self.id_column}' (id) has value(s) that are not ids (empty, true/false or a fraction)",
                s.to_numpy(dtype=object)[bad],
            )
        if found.bad_rows is None:  # every row of a repeated id named (set aside: see validate)
            valid = ~(blank | bad)
            dup = valid & pd.Series(ids).where(valid).duplicated(keep=False).to_numpy()
            found.refuse(dup, f"duplicate id(s) in column '{self.id_column}'", ids[dup])
        return ids

    def _numbers(self, s: pd.Series, col: str, found: _Refusals) -> np.ndarray:
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            num = s.to_numpy(dtype="float64")
            bad = np.isinf(num)
        else:

            def parse(v: object) -> float:
                try:
                    return self.number(v)
                except ValueError:
                    return math.inf  # marks a refused value (inf itself is refused too)

            num = map_unique(s, parse, dtype=float)
            bad = np.isinf(num)
        if bad.any():
            found.refuse(bad, f"column '{col}' must be numeric but has text value(s)", np.asarray(s, dtype=object)[bad])
            num = np.where(bad, np.nan, num)  # (a row set aside: not also out of range)
        if col in self.missing_codes:  # e.g. -1 = "never contacted": missing, not a number
            num = np.where(np.isin(num, self.missing_codes[col]), np.nan, num)
        lo, hi = self.ranges[col]
        outside = np.zeros(len(num), dtype=bool)
        if lo is not None:
            outside |= num < lo  # NaN compares False: missing values are not out of range
        if hi is not None:
            outside |= num > hi
        if outside.any():
            found.refuse(outside, f"column '{col}' has value(s) {range_text(lo, hi)}", [float(x) for x in num[outside]])
        return num

    def _yes_no(self, s: pd.Series, col: str, found: _Refusals) -> np.ndarray:
        values = map_unique(s, text)
        bad = map_unique(values, lambda v: not self.yes_no_ok(v), dtype=bool)
        found.refuse(bad, f"column '{col}' (yes/no) has value(s) outside yes_values/no_values", values[bad])
        return values

    def _target(self, s: pd.Series, found: _Refusals) -> np.ndarray:
        def target_text(v: object) -> str | None:
            t = text(v)
            return t[:-2] if t is not None and t.endswith(".0") else t

        t = map_unique(s, target_text)
        bad = map_unique(t, lambda v: v not in (self.positive, self.negative), dtype=bool)
        values = list(t[bad])
        empty = sum(v is None for v in values)
        hint = (
            f"; {empty} lead(s) have no outcome: remove them from the export (a lead still open cannot teach the model)"
            if empty
            else ""
        )
        found.refuse(
            bad,
            f"target column '{self.target_column}' must be {self.positive!r} or {self.negative!r}; found",
            ["(empty)" if v is None else v for v in values],
            hint,
            joiner=" ",
        )
        return (t == self.positive).astype("int64")

    # -- an API request -------------------------------------------------------------------
    def request_model(self) -> type[BaseModel]:
        """A pydantic model of one lead in the raw column names, applying the rules above:
        the id required, every other column optional (missing = unknown), unknown fields
        refused (built by :func:`leadscoring.ingest.request.request_model`)."""
        from leadscoring.ingest.request import request_model

        return request_model(self)


def range_text(lo: float | None, hi: float | None) -> str:
    """What a value out of a configured range is, in words: "below 0", "above 100" or
    "outside [0, 100]"."""
    if hi is None:
        return f"below {lo:g}"
    if lo is None:
        return f"above {hi:g}"
    return f"outside [{lo:g}, {hi:g}]"


def validate_leads(
    df: pd.DataFrame,
    cfg: ProjectConfig,
    *,
    require_target: bool = True,
    origin: str = "input",
    rows: RowLocator | None = None,
    may_lack: Collection[str] = (),
    bad_rows: BadRows | None = None,
) -> pd.DataFrame:
    """``LeadSchema(cfg).validate(df, ...)``: check a frame against the configured layout."""
    return LeadSchema(cfg).validate(
        df, require_target=require_target, origin=origin, rows=rows, may_lack=may_lack, bad_rows=bad_rows
    )
