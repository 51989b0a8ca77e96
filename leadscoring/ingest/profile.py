"""Profiling a client's export to draft its configuration (``leadscoring init``).

Every inference comes with its reason, so the drafted ``config.yaml`` can say why it chose
what it chose: the file's encoding, separator and decimal mark; the id and target columns
and the positive value; each column's role (numeric, categorical, yes/no) or why it is
left out (constant, a second id, free text, a date, an empty header); the placeholder
values and numeric sentinels that mean "missing"; ranges, labels, and a first guess of fit
(who the lead is) versus engagement (what the lead did). Nothing here trains a model.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from leadscoring.errors import LeadDataError

SAMPLE_ROWS = 200_000
PLACEHOLDERS = ("select", "unknown", "n/a", "na", "-", "--", "none", "null", "?", "not specified", "no data")
YES = ("yes", "y", "true", "1", "si", "sí", "s")
NO = ("no", "n", "false", "0")
POSITIVES = ("1", "yes", "y", "true", "converted", "won", "si", "sí", "buy", "bought", "purchased", "success")
ID_NAME = re.compile(
    r"(^|[\s_\-.])(id|identifier|key|uuid|code|number|nr|no)$|^id[\s_\-.]|^(lead|prospect|customer|client)"
    r"[\s_\-.]?(id|number|code|no)$",
    re.I,
)
ENGAGEMENT = re.compile(
    r"visit|time|page|view|click|open|download|session|activit|web|site|minute|second|form|"
    r"visita|tiempo|pagina|página|descarga|actividad|sesion|sesión|evento",
    re.I,
)


@dataclass
class Draft:
    """What was inferred about an export, each choice with its reason."""

    separator: str
    encoding: str
    decimal: str
    thousands: str | None
    target: str
    positive: str
    negative: str
    id_column: str | None
    rows: int
    date_column: str | None = None
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    yes_no: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    missing_values: list[str] = field(default_factory=list)
    sentinels: dict[str, list[float]] = field(default_factory=dict)
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    fit: list[str] = field(default_factory=list)
    engagement: list[str] = field(default_factory=list)
    post_contact: dict[str, str] = field(default_factory=dict)  # filled by init (leakage name check)
    reasons: dict[str, str] = field(default_factory=dict)


def sniff_encoding(head: bytes) -> tuple[str, str]:
    """(encoding, reason) from the first bytes of a file."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", "UTF-8 with a byte-order mark (read as UTF-8; the mark is skipped)"
    try:  # incremental: a character cut at the end of the sample is not an error
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        return "latin-1", f"not valid UTF-8 (byte {exc.start}); read as Latin-1"
    return "utf-8", "valid UTF-8"


def sniff_separator(text: str) -> tuple[str, str]:
    """(separator, reason): the candidate that splits the first lines into the same number
    (> 1) of fields, quotes respected."""
    lines = [ln for ln in text.splitlines()[:50] if ln.strip()]
    best: tuple[int, str] | None = None
    for sep in (",", ";", "\t", "|"):
        counts = {len(row) for row in csv.reader(io.StringIO("\n".join(lines)), delimiter=sep)}
        if len(counts) == 1 and (n := counts.pop()) > 1 and (best is None or n > best[0]):
            best = (n, sep)
    if best is None:
        raise LeadDataError("cannot tell the separator: no candidate (, ; tab |) splits the first lines evenly; pass --separator")
    return best[1], f"splits every one of the first {len(lines)} lines into {best[0]} fields"


def _number_pattern(values: pd.Series) -> tuple[str, str | None] | None:
    """(decimal, thousands) when most values read as numbers in one notation, else None."""
    v = values[values != ""]
    if v.empty:
        return None
    if v.str.fullmatch(r"-?\d+").mean() >= 0.95:
        return "", None  # whole numbers: any notation
    for decimal, thousands, pattern in (
        (".", None, r"-?\d+(\.\d+)?([eE][-+]?\d+)?"),
        (",", None, r"-?\d+(,\d+)?"),
        (",", ".", r"-?\d{1,3}(\.\d{3})+(,\d+)?"),
        (".", ",", r"-?\d{1,3}(,\d{3})+(\.\d+)?"),
    ):
        if v.str.fullmatch(pattern).mean() >= 0.95:
            return decimal, thousands
    return None


def _to_float(values: pd.Series, decimal: str, thousands: str | None) -> pd.Series:
    t = values.str.replace(thousands, "", regex=False) if thousands else values
    t = t.str.replace(decimal, ".", regex=False) if decimal != "." else t
    return pd.to_numeric(t.where(t != ""), errors="coerce")


def _sentinels(x: pd.Series) -> list[float]:
    """Values standing for "missing" in a numeric column: a spike (≥ 2 % of leads) at a value
    such as -1, 999 or 9999 that lies outside the range of the other values."""
    x = x.dropna()
    found = []
    for value, share in x.value_counts(normalize=True).items():
        rest = x[x != value]
        if share < 0.02 or rest.empty or value not in (-1, -99, -999, 99, 999, 9999, 99999):
            continue
        if value < rest.min() or value > 10 * rest.quantile(0.99):
            found.append(float(value))
    return found


def _read(path: Path, separator: str, encoding: str) -> pd.DataFrame:
    try:
        return pd.read_csv(
            path,
            sep=separator,
            encoding="utf-8-sig" if encoding == "utf-8" else encoding,
            dtype=str,
            keep_default_na=False,
            nrows=SAMPLE_ROWS,
            on_bad_lines="skip",
        )
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise LeadDataError(f"{path.name}: cannot be read for profiling ({str(exc).splitlines()[0]})") from None


def infer_target(df: pd.DataFrame, target: str, positive: str | None) -> tuple[str, str, str]:
    """(positive, negative, reason); refuses a missing, constant or many-valued target."""
    if target not in df.columns:
        raise LeadDataError(f"target column {target!r} not found; the export has {list(df.columns)}")
    values = df[target].str.strip()
    levels = sorted(set(values[values != ""]))
    if len(levels) != 2:
        raise LeadDataError(
            f"target column {target!r} must have exactly two values (converted or not); found {len(levels)}: {levels[:10]}"
        )
    if positive is None:
        known = [lv for lv in levels if lv.casefold() in POSITIVES]
        if len(known) != 1:
            raise LeadDataError(f"cannot tell which of {levels} means 'converted'; pass --positive")
        positive, why = known[0], f"{known[0]!r} reads as converted"
    elif positive not in levels:
        raise LeadDataError(f"--positive {positive!r} is not a value of {target!r}; its values are {levels}")
    else:
        why = "given"
    negative = next(lv for lv in levels if lv != positive)
    share = float((values == positive).mean())
    return positive, negative, f"{why}; {share:.1%} of the leads converted"


def infer_id(df: pd.DataFrame, given: str | None, exclude: set[str]) -> tuple[str | None, str]:
    """(id column or None, reason): given, or the first unique, non-empty, id-like column."""
    if given is not None:
        if given not in df.columns:
            raise LeadDataError(f"id column {given!r} not found; the export has {list(df.columns)}")
        ids = df[given].str.strip()
        if (ids == "").any() or ids.duplicated().any():
            raise LeadDataError(f"id column {given!r} has empty or repeated values; leave --id out to number leads")
        return given, "given"
    for col in df.columns:
        if col in exclude or not ID_NAME.search(col.strip()):
            continue
        ids = df[col].str.strip()
        if not (ids == "").any() and not ids.duplicated().any():
            return col, "unique, never empty, and named like an id"
    return None, "no unique, id-like column: leads are identified by their row number in the export"


def _role(col: str, s: pd.Series, n: int, draft: Draft) -> tuple[str | None, str]:
    """(role or None, reason) of one column; collects placeholders, sentinels and ranges."""
    if not col.strip() or col.startswith("Unnamed:"):
        return None, "empty header"
    v = s.str.strip()
    placeholders = sorted({x for x in v.unique() if x.casefold() in PLACEHOLDERS})
    v = v.where(~v.isin(placeholders), "")
    present = v[v != ""]
    if present.nunique() <= 1:
        return None, "constant (one value or empty)"
    if set(present.str.casefold().unique()) <= {*YES, *NO} and present.nunique() == 2:
        draft.missing_values += [p for p in placeholders if p not in draft.missing_values]
        return "yes_no", f"two values, {sorted(present.unique())}"
    notation = _number_pattern(v)
    if notation is not None:
        x = _to_float(v, draft.decimal, draft.thousands)
        if present.nunique() == len(present) == n and (x == x.round()).all():
            return None, "a second id (unique whole numbers)"
        sentinels = _sentinels(x)
        if sentinels:
            draft.sentinels[col] = sentinels
        rest = x[~x.isin(sentinels)]
        if rest.min() >= 0:
            draft.ranges[col] = (0.0, None)
        return "numeric", "numbers" + (f"; {sentinels} look like 'missing' codes" if sentinels else "")
    if pd.to_datetime(present.head(500), errors="coerce", format="mixed").notna().mean() >= 0.95:
        return None, "a date (not a model input)"
    if present.nunique() > 50 and present.nunique() / len(present) > 0.5:
        return None, f"free text or near-unique ({present.nunique()} distinct values)"
    draft.missing_values += [p for p in placeholders if p not in draft.missing_values]
    extra = f"; {placeholders} mean missing" if placeholders else ""
    return "categorical", f"{present.nunique()} levels{extra}"


def profile_export(
    path: str | Path,
    target: str,
    *,
    positive: str | None = None,
    id_column: str | None = None,
    separator: str | None = None,
    encoding: str | None = None,
) -> Draft:
    """Infer the configuration of an export (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise LeadDataError(f"{path}: file not found")
    head = path.open("rb").read(1 << 16)
    enc, enc_why = (encoding, "given") if encoding else sniff_encoding(head)
    text = head.decode("utf-8-sig" if enc == "utf-8" else enc, errors="ignore")
    sep, sep_why = (separator, "given") if separator else sniff_separator(text)
    df = _read(path, sep, enc)
    df.columns = [str(c).strip() for c in df.columns]
    pos, neg, target_why = infer_target(df, target, positive)
    id_col, id_why = infer_id(df, id_column, {target})
    notations = [nt for c in df.columns if c not in (target, id_col) and (nt := _number_pattern(df[c].str.strip()))]
    commas = sum(nt[0] == "," for nt in notations)
    dots = sum(nt[0] == "." for nt in notations)
    decimal = "," if commas > dots else "."
    thousands = "." if (",", ".") in notations and decimal == "," else None
    draft = Draft(sep, enc, decimal, thousands, target, pos, neg, id_col, len(df))
    draft.reasons.update(
        encoding=enc_why,
        separator=sep_why,
        target=target_why,
        id=id_why,
        decimal="numbers use ',' as decimal mark" if decimal == "," else "numbers use '.'",
    )
    for col in df.columns:
        if col in (target, id_col):
            continue
        role, why = _role(col, df[col], len(df), draft)
        if role is None:
            draft.left_out[col] = why
            continue
        getattr(draft, role).append(col)
        draft.reasons[col] = why
        draft.labels[col] = re.sub(r"[_\s]+", " ", col).strip().lower()
        (draft.engagement if ENGAGEMENT.search(col) else draft.fit).append(col)
    return draft
