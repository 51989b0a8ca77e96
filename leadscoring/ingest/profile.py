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

import numpy as np
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
    dates: list[str] = field(default_factory=list)  # columns read as dates
    warnings: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)


#: The byte-order marks of the wide Unicode encodings, UTF-32's first (UTF-32-LE's starts
#: with UTF-16-LE's): (mark, the Python codec reading it and skipping the mark, its name).
WIDE_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"),
)
#: Byte positions (modulo 4) that are NUL in mostly-ASCII text of each wide encoding.
WIDE_NULS = {
    "utf-32-le": {1, 2, 3},
    "utf-32-be": {0, 1, 2},
    "utf-16-le": {1, 3},
    "utf-16-be": {0, 2},
}


def _wide_without_mark(head: bytes) -> str | None:
    """The wide encoding (``utf-16-le`` …) of text without a byte-order mark, told by where
    its NUL bytes fall (mostly-ASCII text: every second or three bytes in four are NUL);
    None when the sample is not NUL-heavy; ``"binary"`` when it is, in no such pattern."""
    sample = head[:4096]
    sample = sample[: len(sample) - len(sample) % 4]
    if len(sample) < 4 or sample.count(0) < len(sample) / 4:
        return None
    zeros = [sample[r::4].count(0) / len(sample[r::4]) for r in range(4)]
    for encoding, nuls in WIDE_NULS.items():
        if all(zeros[r] >= 0.7 if r in nuls else zeros[r] < 0.3 for r in range(4)):
            return encoding
    return "binary"


def sniff_encoding(head: bytes, name: str = "the export") -> tuple[str, str]:
    """(encoding, reason) from the first bytes of a file (``name``, for messages): UTF-8
    (with or without a byte-order mark), UTF-16 or UTF-32 (a byte-order mark, or the NUL
    bytes of wide text without one), else Latin-1. NUL-heavy bytes of no text encoding, or
    a wide byte-order mark before bytes that do not decode, are a one-line
    :class:`LeadDataError` naming the file."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", "UTF-8 with a byte-order mark (read as UTF-8; the mark is skipped)"
    wide = next(((codec, label, "with a byte-order mark") for mark, codec, label in WIDE_MARKS if head.startswith(mark)), None)
    if wide is None and (found := _wide_without_mark(head)) is not None:
        if found == "binary":
            raise LeadDataError(
                f"{name}: {head.count(0)} of its first {len(head)} bytes are NUL: not a text (CSV) export; save it as CSV in UTF-8"
            )
        wide = (found, found.upper().replace("-LE", " little-endian").replace("-BE", " big-endian"), "without a byte-order mark")
    if wide is not None:
        codec, label, how = wide
        try:
            codecs.getincrementaldecoder(codec)().decode(head, final=False)
        except UnicodeDecodeError as exc:
            raise LeadDataError(
                f"{name}: looks like {label} {how} but is not valid {label} (byte {exc.start}); save it as UTF-8"
            ) from None
        return codec, f"{label} {how} (read as {codec})"
    try:  # incremental: a character cut at the end of the sample is not an error
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        return "latin-1", f"not valid UTF-8 (byte {exc.start}); read as Latin-1"
    return "utf-8", "valid UTF-8"


def _check_given_encoding(head: bytes, encoding: str, name: str) -> None:
    """Refuse a given encoding (``--encoding``) that would read a UTF-16/32 byte-order mark
    as text (the mark and every NUL would end up in the column names), or no encoding at all."""
    try:
        given = codecs.lookup(encoding).name
    except LookupError:
        raise LeadDataError(f"{name}: {encoding!r} (--encoding) is not a known text encoding") from None
    for mark, codec, label in WIDE_MARKS:
        if head.startswith(mark):
            if given != codecs.lookup(codec).name:
                raise LeadDataError(
                    f"{name}: {label} with a byte-order mark, not {encoding} as given (--encoding); "
                    f"leave --encoding out (read as {codec}) or save it as UTF-8"
                )
            return


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


#: Month and weekday names and abbreviations (English, Spanish, Portuguese, French, German,
#: Italian): a column of these is a seasonal input, not a date.
CALENDAR_NAMES = {
    "month names": (
        "jan feb mar apr may jun jul aug sep sept oct nov dec january february march april june july august september "
        "october november december ene abr ago dic enero febrero marzo abril mayo junio julio agosto septiembre "
        "setiembre octubre noviembre diciembre fev mai set out dez janeiro fevereiro marco março maio junho julho "
        "setembro outubro novembro dezembro janv fevr févr avr juin juil aout août déc janvier février mars avril "
        "juillet septembre octobre novembre décembre mär okt januar februar märz juni juli oktober dezember gen "
        "giu lug ott gennaio febbraio aprile maggio giugno luglio settembre ottobre dicembre"
    ).split(),
    "weekday names": (
        "mon tue tues wed thu thur thurs fri sat sun monday tuesday wednesday thursday friday saturday sunday lun mar "
        "mie mié jue vie sab sáb dom lunes martes miercoles miércoles jueves viernes sabado sábado domingo seg ter qua "
        "qui sex segunda terça terca quarta quinta sexta lundi mardi mercredi jeudi vendredi samedi dimanche mo di mi "
        "do fr sa so montag dienstag mittwoch donnerstag freitag samstag sonntag"
    ).split(),
}
TIME_OF_DAY = re.compile(r"\d{1,2}(:\d{2}){1,2}(\s?[ap]\.?m\.?)?|\d{1,2}\s?[ap]\.?m\.?", re.I)
#: Names of a lead's creation date, most telling first; names of later events are never it.
#: Words of a creation-date column's name, most telling first: explicit creation, then first
#: contact / sign-up, then a lead date, then a generic date, then a day or time.
CREATION_WORDS = tuple(
    re.compile(p, re.I)
    for p in (
        r"creat|creaci|alta",
        r"first[\s_\-.]*(contact|seen|touch|visit)|sign[\s_\-.]*up|regist|registro|date[\s_\-.]*added|added[\s_\-.]*on"
        r"|submitted|inquiry|enquiry",
        r"lead[\s_\-.]*date",
        r"fecha|date",
        r"day|time",
    )
)
LATER_EVENT = re.compile(r"clos|won|lost|convert|modif|updat|last|end|cierre|ganad|perdid|actualiz|ultim|últim", re.I)


def _calendar_part(present: pd.Series) -> str:
    """'month names', 'weekday names', 'times of day' or '' for a text column."""
    values = present.str.strip().str.casefold().str.rstrip(".")
    for what, names in CALENDAR_NAMES.items():
        if values.isin(names).mean() >= 0.95:
            return what
    if values.str.fullmatch(TIME_OF_DAY).mean() >= 0.95:
        return "times of day"
    return ""


def _is_date(present: pd.Series) -> bool:
    """Whether (nearly) every value reads as a calendar date (with or without a time)."""
    sample = present.head(500)
    if not sample.str.contains(r"\d", regex=True).all():
        return False
    return bool(pd.to_datetime(sample, errors="coerce", format="mixed").notna().mean() >= 0.95)


def infer_creation_date(df: pd.DataFrame, draft: Draft, target: str) -> None:
    """Choose the lead's creation date among the date columns: the one named most like a
    creation date (never a column named like a later event: closed, won, last, modified...),
    or the only date column; set ``draft.date_column`` with the reason, and warn in
    ``draft.warnings`` when the conversion rate drifts strongly over time."""
    candidates = [c for c in draft.dates if not LATER_EVENT.search(c)]
    named = sorted((c for c in candidates if _creation_rank(c) < len(CREATION_WORDS)), key=_creation_rank)
    pick = named[0] if named else (candidates[0] if len(candidates) == 1 else None)
    if pick is None:
        if draft.dates:
            draft.reasons["date"] = f"date columns {draft.dates} do not read like a creation date: random validation split"
        return
    draft.date_column = pick
    draft.left_out.pop(pick, None)
    draft.reasons["date"] = (
        f"'{pick}' reads as the lead's creation date: validation on the most recent leads, forward-chaining "
        "cross-validation (--date NONE for a random split)"
    )
    drift = conversion_drift(
        pd.to_datetime(df[pick].where(df[pick].str.strip() != ""), errors="coerce", format="mixed"), df[target] == draft.positive
    )
    if drift:
        draft.warnings.append(drift)


def _creation_rank(col: str) -> int:
    """Position of the first :data:`CREATION_WORDS` group the name matches (lower is more
    telling); ``len(CREATION_WORDS)`` when none does."""
    return next((rank for rank, words in enumerate(CREATION_WORDS) if words.search(col)), len(CREATION_WORDS))


def conversion_drift(when: pd.Series, converted: pd.Series, parts: int = 5, ratio: float = 2.0) -> str:
    """A warning when the conversion rate of the oldest to newest fifth of leads (by date)
    varies more than ``ratio``-fold (and by at least 5 points); '' otherwise."""
    frame = pd.DataFrame({"when": when, "y": converted.astype(float)}).dropna().sort_values("when", kind="stable")
    if len(frame) < parts * 50:
        return ""
    rates = [float(frame["y"].iloc[part].mean()) for part in np.array_split(np.arange(len(frame)), parts)]
    low, high = min(rates), max(rates)
    if high - low >= 0.05 and high >= ratio * max(low, 1e-9):
        shown = ", ".join(f"{r:.1%}" for r in rates)
        return (
            f"the conversion rate drifts strongly over time (oldest to newest fifth of leads: {shown}): "
            "validation on the most recent leads will differ from cross-validation; consider training on a recent period"
        )
    return ""


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
    if calendar := _calendar_part(present):
        draft.missing_values += [p for p in placeholders if p not in draft.missing_values]
        return "categorical", f"{calendar} (a seasonal input, not a date)"
    if _is_date(present):
        draft.dates.append(col)
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
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    if not head:
        raise LeadDataError(f"{path.name}: the export is empty (0 bytes): no header, no leads")
    if encoding:
        _check_given_encoding(head, encoding, path.name)
    enc, enc_why = (encoding, "given") if encoding else sniff_encoding(head, path.name)
    text = head.decode("utf-8-sig" if enc == "utf-8" else enc, errors="ignore")
    if not text.strip():
        raise LeadDataError(f"{path.name}: the export is empty (only blank lines or a byte-order mark): no header, no leads")
    sep, sep_why = (separator, "given") if separator else sniff_separator(text)
    df = _read(path, sep, enc)
    if df.empty:
        raise LeadDataError(f"{path.name}: the export has a header but no rows: no leads to profile")
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
    infer_creation_date(df, draft, target)
    return draft
