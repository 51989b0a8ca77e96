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
from leadscoring.ingest.values import CURRENCY, parse_dates, plain_number
from leadscoring.io import file_blocks, first_non_utf8

SAMPLE_ROWS = 200_000
#: Values that say "not filled in" (compared case-insensitively), in English, German, French,
#: Spanish, Portuguese, Italian and Dutch, and as analytics tools and spreadsheets write them.
PLACEHOLDERS = (
    *("select", "unknown", "n/a", "na", "-", "--", "---", "none", "null", "?", "not specified", "no data", "not set"),
    *("(not set)", "(none)", "undefined", "nan", "#n/a", "k.a.", "k. a.", "keine angabe", "unbekannt", "n.a.", "inconnu"),
    *("non renseigné", "non précisé", "desconocido", "sin datos", "sin dato", "no especificado", "desconhecido"),
    *("não informado", "sconosciuto", "non specificato", "onbekend", "n.d.", "n/d", "s/d", "n.v.t.", "n.b."),
    *("non disponibile", "não disponível", "nicht angegeben", "non disponible", "no disponible"),
)
#: Placeholders that are also two-letter codes (``NA``: Napoli, Namibia): in a column of such
#: codes they are a level, not "missing".
CODE_PLACEHOLDERS = ("na",)
#: Yes and no in English, Spanish, Portuguese, French, German and Italian.
YES = ("yes", "y", "true", "1", "si", "sí", "s", "sim", "oui", "ja", "j", "sì", "vrai", "wahr", "verdadero", "verdadeiro", "vero")
NO = ("no", "n", "false", "0", "não", "nao", "non", "nein", "falso", "faux", "falsch")
#: Target values that read as "converted", in English, Spanish, Portuguese, French, German and Italian.
POSITIVES = (
    *("1", "yes", "y", "true", "converted", "won", "closed won", "closed-won", "si", "sí", "buy", "bought", "purchased"),
    *("success", "ganado", "ganada", "convertido", "convertida", "ganho", "ganha", "gagné", "gagnée", "converti"),
    *("gewonnen", "konvertiert", "vinto", "vinta", "convertito", "convertita"),
)
ID_NAME = re.compile(
    r"(^|[\s_\-.])(id|identifier|identifiant|identificador|identificativo|key|uuid|code|number|nr|no|código|codigo"
    r"|nummer|numero|número|numéro|kennung|ref"
    r"|reference|referencia|référence|rif|riferimento|codice|cod)$|^id[\s_\-.]"
    r"|^(rif|ref|cod|codice|código|codigo|code|numero|número|numéro|nummer|nr|num)[\s_\-.]+\w"
    r"|^(lead|prospect|customer|client)[\s_\-.]?(id|number|code|no)$",
    re.I,
)
#: Phone numbers and postal codes: digits that are no quantity, never a numeric input.
CONTACT_NAME = re.compile(
    r"phone|\btel\b|telef|teléf|mobile|móvil|movil|handy|\bfax\b|whatsapp|zip|postal|postcode|\bplz\b|\bcep\b",
    re.I,
)


def _name(col: str) -> str:
    """A column name as the name rules read it: trimmed, without trailing punctuation ("Lead-Nr.")."""
    return col.strip().rstrip(".:#")


ENGAGEMENT = re.compile(
    r"visit|time|page|view|click|open|download|session|activit|web|site|minute|second|form|"
    r"visita|tiempo|pagina|página|descarga|actividad|sesion|sesión|evento|"
    # words that are parts of others ("industrial", "revue", "approvato") only at a word's start
    r"\btrial|\bwebinar|\bevent|\bprueba\b|\bvues?\b|\bdurée|\bduree|téléchargement|telechargement|\bessai|"
    r"\bwebinaire|événement|\bevenement|\bbesuch|\bseite|\bsitzung|\bdauer|testversion|veranstaltung|\bvisualizza|"
    r"\bsessione|\bdurata|\bprova\b|"
    # Portuguese ("Baixou e-book", "Tempo no site", "Acessos", "Cliques") and content downloads
    # (not "Renda baixa", "Nível de acesso", "Data de abertura da empresa", "Acessórios")
    r"\bbaixou|\bbaixad|\bbaixar|\btempo\b|\bacessos\b|último acesso|\bcliques?\b|sessão|sessões|\bsessao|\bsessoes|"
    r"\baberturas\b|\bvisualiza|\be-?book|whitepaper",
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
    date_formats: dict[str, str] = field(default_factory=dict)  # how a date column is written (data.date_format)
    date_format: str | None = None  # the creation date's
    conversion_rate: float | None = None  # the share of the leads with an outcome that converted
    yes_values: list[str] = field(default_factory=list)  # spellings found in yes/no columns
    no_values: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    code_levels: dict[str, list[str]] = field(default_factory=dict)  # placeholders read as codes ("NA")


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
        return _single_byte(head, f"not valid UTF-8 (byte {exc.start})")
    return "utf-8", "valid UTF-8"


def _single_byte(data: bytes | Path, why: str) -> tuple[str, str]:
    """(encoding, reason) of text (bytes, or a file read in blocks) that is not UTF-8:
    Windows-1252 (what Excel writes in Western Europe: its €, curly quotes and dashes), or
    Latin-1 when a byte has no Windows-1252 meaning."""
    blocks = [data] if isinstance(data, bytes) else file_blocks(data)
    try:
        for block in blocks:
            block.decode("cp1252")  # one byte per character: a block boundary cuts none
    except UnicodeDecodeError:
        return "latin-1", f"{why}; read as Latin-1"
    return "cp1252", f"{why}; read as Windows-1252 (cp1252)"


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
    """(separator, reason): the candidate that splits the first records (up to 50) into the
    same number (> 1) of fields, quotes respected: a quoted field may hold separators and line
    breaks. The last record of the sample is left out (the sample may cut it)."""
    best: tuple[int, str, int] | None = None
    for sep in (",", ";", "\t", "|"):
        try:
            rows = [row for row in csv.reader(io.StringIO(text), delimiter=sep) if any(f.strip() for f in row)]
        except csv.Error:
            continue
        rows = rows[:50] if len(rows) > 50 else rows[:-1] or rows
        counts = {len(row) for row in rows}
        if len(counts) == 1 and (n := counts.pop()) > 1 and (best is None or n > best[0]):
            best = (n, sep, len(rows))
    if best is None:
        raise LeadDataError("cannot tell the separator: no candidate (, ; tab |) splits the first lines evenly; pass --separator")
    return best[1], f"splits every one of the first {best[2]} records into {best[0]} fields"


def _number_pattern(values: pd.Series) -> tuple[str, str | None] | None:
    """(decimal, thousands) when most values read as numbers in one notation, else None.
    Whole numbers grouped in thousands (``1.200``, ``12.000``: every mark followed by three
    digits, none after a leading 0) tell the thousands mark and no decimal mark (``""``)."""
    v = values[values != ""].str.replace(CURRENCY, r"\1", regex=True)
    if v.empty:
        return None
    if v.str.fullmatch(r"-?\d+").mean() >= 0.95:
        return "", None  # whole numbers: any notation
    for decimal, thousands, pattern in (
        ("", ".", r"-?[1-9]\d{0,2}(\.\d{3})+|-?\d+"),
        ("", ",", r"-?[1-9]\d{0,2}(,\d{3})+|-?\d+"),
        ("", " ", r"-?[1-9]\d{0,2}([ \u00a0\u202f]\d{3})+|-?\d+"),
        (".", None, r"-?\d+(\.\d+)?([eE][-+]?\d+)?"),
        (",", None, r"-?\d+(,\d+)?"),
        (",", ".", r"-?\d{1,3}(\.\d{3})*(,\d+)?"),
        (".", ",", r"-?\d{1,3}(,\d{3})*(\.\d+)?"),
        (",", " ", r"-?\d{1,3}([ \u00a0\u202f]\d{3})*(,\d+)?"),
        (".", " ", r"-?\d{1,3}([ \u00a0\u202f]\d{3})*(\.\d+)?"),
    ):
        if v.str.fullmatch(pattern).mean() >= 0.95:
            return decimal, thousands
    return None


def number_notation(notations: list[tuple[str, str | None]]) -> tuple[str, str | None, str]:
    """The export's (decimal, thousands, note) from its columns' notations: the decimal mark
    most columns with decimals use; as thousands mark, the other mark or a space, whichever
    most columns group by (a space stands for no-break spaces too). With no decimals anywhere,
    ``1.250`` is either 1,250 or 1.25: read with '.' as the decimal mark, as before, and said
    in ``note`` (else '')."""
    commas = sum(nt[0] == "," for nt in notations)
    dots = sum(nt[0] == "." for nt in notations)
    decimal = "," if commas > dots else "."
    other = "." if decimal == "," else ","
    grouping = [nt[1] for nt in notations if nt[1] in (other, " ")]
    thousands = max((other, " "), key=grouping.count) if grouping else None
    note = ""
    if commas == dots == 0 and any(nt[1] == "." for nt in notations):
        note = (
            "numbers such as '1.250' may be thousands (1,250) or decimals (1.25), and no column with decimals "
            "tells: read with '.' as the decimal mark; REVIEW data.decimal and data.thousands"
        )
    return decimal, thousands, note


def _to_float(values: pd.Series, decimal: str, thousands: str | None) -> pd.Series:
    t = values.map(lambda v: plain_number(v, decimal, thousands))
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
#: Words of a creation-date column's name, most telling first: explicit creation, then first
#: contact / sign-up, then a lead date, then a generic date, then a day or time.
CREATION_WORDS = tuple(
    re.compile(p, re.I)
    for p in (
        r"creat|creaci|creaz|alta|erstell|angelegt|créé|cree|criad|criaç|cadastr|inserim|aangemaakt",
        r"first[\s_\-.]*(contact|seen|touch|visit)|sign[\s_\-.]*up|regist|registro|date[\s_\-.]*added|added[\s_\-.]*on"
        r"|submitted|inquiry|enquiry|primo[\s_\-.]*contatto|primeiro[\s_\-.]*contato|primer[\s_\-.]*contacto"
        r"|premier[\s_\-.]*contact|erstkontakt",
        r"lead[\s_\-.]*date",
        r"fecha|date|\bdata\b|datum",
        r"day|time",
    )
)
LATER_EVENT = re.compile(
    r"clos|won|lost|convert|modif|updat|last|end|cierre|ganad|perdid|actualiz|ultim|últim|contract|contrat|firma|sign(ed|ature)"
    r"|chius|fechament|abschluss|unterschr|vinto|perso",
    re.I,
)


def _calendar_part(present: pd.Series) -> str:
    """'month names', 'weekday names', 'times of day' or '' for a text column."""
    values = present.str.strip().str.casefold().str.rstrip(".")
    for what, names in CALENDAR_NAMES.items():
        if values.isin(names).mean() >= 0.95:
            return what
    if values.str.fullmatch(TIME_OF_DAY).mean() >= 0.95:
        return "times of day"
    return ""


#: Names of a date column: numbers in it (epoch seconds, Excel serial days) are dates.
DATE_NAME = re.compile(
    r"date|fecha|datum|\bdata\b|timestamp|_at$|\bat$|\bam$|creat|alta|erstell|angelegt|créé|criad|"
    r"first[\s_\-.]*(contact|seen|touch|visit)|sign[\s_\-.]*up|regist",
    re.I,
)


def _numeric_date(present: pd.Series) -> str | None:
    """The ``data.date_format`` of numbers that are dates (in a column named like a date):
    epoch seconds or milliseconds (years 2000 to 2039), or Excel serial days (1970 to 2099)."""
    x = pd.to_numeric(present, errors="coerce")
    if x.isna().mean() > 0.05:
        return None
    lo, hi, whole = x.min(), x.max(), bool((x.dropna() == x.dropna().round()).all())
    if whole and 9.46e8 <= lo and hi <= 2.21e9:
        return "unix_seconds"
    if whole and 9.46e11 <= lo and hi <= 2.21e12:
        return "unix_milliseconds"
    if 25569 <= lo and hi <= 73051:
        return "excel_serial"
    return None


_DAY_MONTH = r"^\s*(\d{1,2})([./-])(\d{1,2})[./-]\d{2,4}\b"


def _date_style(present: pd.Series) -> tuple[str | None, str]:
    """(``data.date_format``, why) of text dates written with the day and the month as
    numbers (``31.12.2024``, ``12/31/2024``): ``day_first`` when a first number exceeds 12,
    ``month_first`` when a second does; with neither, dates with dots are day first (the
    convention where they are written so) and others are left to the default reading, with
    a warning. None for ISO 8601 (year first) or named months."""
    parts = present.str.extract(_DAY_MONTH).dropna()
    if parts.empty:
        return None, ""
    first, second = parts[0].astype(int), parts[2].astype(int)
    example = present.loc[parts.index[0]]
    if (first > 12).any() and not (second > 12).any():
        big = present.loc[first[first > 12].index[0]]
        return "day_first", f"the day comes first ({big!r})"
    if (second > 12).any() and not (first > 12).any():
        big = present.loc[second[second > 12].index[0]]
        return "month_first", f"the month comes first ({big!r})"
    if (first > 12).any():
        return None, f"the day and the month are in either order (e.g. {example!r}): REVIEW, set data.date_format"
    if (parts[1] == ".").all():
        return "day_first", f"no day above 12 to tell the order; dates with dots ({example!r}) are day first: REVIEW"
    return None, f"no day above 12 tells the day from the month ({example!r}); read month first: REVIEW"


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
    full = [c for c in candidates if (df[c].str.strip() != "").mean() >= 0.95]
    pool = full or candidates  # a lead's creation date is always there; a later event's is not
    named = sorted((c for c in pool if _creation_rank(c) < len(CREATION_WORDS)), key=_creation_rank)
    pick = named[0] if named else (pool[0] if len(pool) == 1 else None)
    how = "reads as the lead's creation date"
    if not named and pick is not None and len(candidates) > 1:
        how = "is the only date filled in for nearly every lead: read as its creation date (REVIEW)"
    if pick is None:
        if draft.dates:
            draft.reasons["date"] = f"date columns {draft.dates} do not read like a creation date: random validation split"
        return
    draft.date_column = pick
    draft.date_format = draft.date_formats.get(pick)
    draft.left_out.pop(pick, None)
    draft.reasons["date"] = (
        f"'{pick}' {how}: validation on the most recent leads, forward-chaining cross-validation (--date NONE for a random split)"
    )
    drift = conversion_drift(
        parse_dates(df[pick].where(df[pick].str.strip() != ""), draft.date_format), df[target] == draft.positive
    )
    if drift:
        draft.warnings.append(drift)


def _creation_rank(col: str) -> int:
    """Position of the first :data:`CREATION_WORDS` group the name matches (lower is more
    telling); ``len(CREATION_WORDS)`` when none does."""
    return next((rank for rank, words in enumerate(CREATION_WORDS) if words.search(col)), len(CREATION_WORDS))


def conversion_drift(when: pd.Series, converted: pd.Series, parts: int = 5, ratio: float = 1.5, min_z: float = 3.0) -> str:
    """A warning when the conversion rate of the oldest to newest fifth of leads (by date)
    varies at least ``ratio``-fold, by at least 5 points, and beyond chance (the lowest and
    highest fifths ``min_z`` standard errors apart); '' otherwise."""
    frame = pd.DataFrame({"when": when, "y": converted.astype(float)}).dropna().sort_values("when", kind="stable")
    if len(frame) < parts * 50:
        return ""
    fifths = [frame["y"].iloc[part] for part in np.array_split(np.arange(len(frame)), parts)]
    rates = [float(f.mean()) for f in fifths]
    low, high = min(rates), max(rates)
    pooled, size = (low + high) / 2, min(len(f) for f in fifths)
    apart = (high - low) / max((2 * pooled * (1 - pooled) / size) ** 0.5, 1e-12)
    if high - low >= 0.05 and high >= ratio * max(low, 1e-9) and apart >= min_z:
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
        hint = (
            "; if some mark leads still open (neither won nor lost), take those rows out of the export "
            "(score them after the run with `leadscoring score`)"
            if 2 < len(levels) <= 10
            else ""
        )
        raise LeadDataError(
            f"target column {target!r} must have exactly two values (converted or not); found {len(levels)}: {levels[:10]}{hint}"
        )
    if positive is None:
        known = [lv for lv in levels if lv.casefold() in POSITIVES]
        if len(known) != 1:  # a yes and a no in any language the yes/no columns read ("Sim"/"Não", "Ja"/"Nein")
            known = [lv for lv in levels if lv.casefold() in YES] if any(lv.casefold() in NO for lv in levels) else []
        if len(known) != 1:
            raise LeadDataError(
                f"target column {target!r}: cannot tell which of {levels} means 'converted'; "
                f"pass --positive VALUE (e.g. --positive {levels[-1]!r})"
            )
        positive, why = known[0], f"{known[0]!r} reads as converted"
    elif positive not in levels:
        raise LeadDataError(f"--positive {positive!r} is not a value of {target!r}; its values are {levels}")
    else:
        why = "given"
    negative = next(lv for lv in levels if lv != positive)
    share = float((values == positive).mean())
    return positive, negative, f"{why}; {share:.1%} of the leads converted"


def infer_id(df: pd.DataFrame, given: str | None, exclude: set[str]) -> tuple[str | None, str]:
    """(id column or None, reason): given, or the first unique, never empty column named like
    an id, else the export's first column when it is unique, never empty and reads like
    codes (whole numbers or text without spaces; not a date, not contact details): exports
    put the CRM's id first, and scores pushed back need it."""
    if given is not None:
        if given not in df.columns:
            raise LeadDataError(f"id column {given!r} not found; the export has {list(df.columns)}")
        ids = df[given].str.strip()
        if (ids == "").any() or ids.duplicated().any():
            raise LeadDataError(f"id column {given!r} has empty or repeated values; leave --id out to number leads")
        return given, "given"
    for col in df.columns:
        if col in exclude or not ID_NAME.search(_name(col)):
            continue
        ids = df[col].str.strip()
        if not (ids == "").any() and not ids.duplicated().any():
            return col, "unique, never empty, and named like an id"
    first = str(df.columns[0])
    ids = df[first].str.strip()
    codes = ids.str.fullmatch(r"[\w\-./#]{1,64}").all() and not ids.str.fullmatch(r"-?\d+[.,]\d+").any()
    named_else = DATE_NAME.search(_name(first)) or CONTACT_NAME.search(first) or _is_date(ids) or _numeric_date(ids)
    if first not in exclude and codes and not named_else and not (ids == "").any() and not ids.duplicated().any():
        return first, "the first column, unique and never empty (not named like an id): REVIEW that it is the CRM's id"
    return None, "no unique, id-like column: leads are identified by their row number in the export"


def column_label(col: str) -> str:
    """A column's name as words for reports: ``_`` as spaces; lower case when every word is
    capitalised or the name is in one case (``Time On Website``, ``lead_source``,
    ``TOTAL_VISITS``: mid-sentence words), else as written (``Minuten auf Website``,
    ``Unternehmensgröße``: a language whose nouns keep their capital)."""
    words = re.sub(r"[_\s]+", " ", col).strip()
    parts = words.split(" ")
    title_case = len(parts) > 1 and all(p[:1].isupper() for p in parts if p[:1].isalpha())
    one_case = words == words.lower() or words == words.upper()
    return words.lower() if title_case or one_case else words


def _keep_placeholders(draft: Draft, placeholders: list[str]) -> None:
    """Record a column's placeholder values as ``missing_values`` (once each), for a column
    that becomes a model input."""
    draft.missing_values += [p for p in placeholders if p not in draft.missing_values]


#: A level rarer than this is grouped with the other rare ones by the models (the default
#: ``cleaning.rare_min_share``).
RARE_SHARE = 0.01


def _without_placeholders(s: pd.Series) -> pd.Series:
    """A column's values stripped, its placeholders ("n.d.", "unknown") as empty."""
    v = s.str.strip()
    return v.where(~v.str.casefold().isin(PLACEHOLDERS), "")


def _two_letter_codes(v: pd.Series, placeholder: str) -> bool:
    """Whether the other filled values of a column are (nearly all) two-letter codes, as
    ``placeholder`` is (provinces, countries): then it is one of them."""
    others = v[(v != "") & (v != placeholder)]
    return len(others) > 0 and bool(others.str.fullmatch(r"[A-Z]{2}").mean() >= 0.95)


def _stray_words(v: pd.Series) -> list[str]:
    """The one or two repeated words without digits ("n.d.", "unbekannt") that alone keep a
    column of numbers (``v``: stripped, placeholders blank) from reading as numbers, else []."""
    present = v[v != ""]
    if present.empty:
        return []
    digits = present.str.contains(r"\d")
    counts = present[~digits].value_counts()
    if digits.mean() < 0.5 or not 1 <= len(counts) <= 2 or counts.min() < 2:
        return []
    return sorted(counts.index) if _number_pattern(v.where(~v.isin(counts.index), "")) else []


def _another_id(draft: Draft) -> str:
    """What a column of unique id-like values is: a second id beside the draft's id, or, when
    no id was found, the id perhaps (``--id`` makes it the leads' id)."""
    return "a second id" if draft.id_column else "an id, perhaps the CRM's (pass --id COLUMN to use it)"


def _role(col: str, s: pd.Series, n: int, draft: Draft) -> tuple[str | None, str]:
    """(role or None, reason) of one column; collects placeholders, sentinels and ranges."""
    if not col.strip() or col.startswith("Unnamed:"):
        return None, "empty header"
    v = s.str.strip()
    placeholders = sorted({x for x in v.unique() if x.casefold() in PLACEHOLDERS})
    codes = [p for p in placeholders if p.casefold() in CODE_PLACEHOLDERS and _two_letter_codes(v, p)]
    if codes:
        placeholders = [p for p in placeholders if p not in codes]
        draft.code_levels[col] = codes
    v = v.where(~v.isin(placeholders), "")
    notation = _number_pattern(v)
    if notation is None and (stray := _stray_words(v)):
        placeholders += stray
        draft.warnings.append(f"'{col}': {stray} read as missing (every other value is a number): REVIEW")
        v = v.where(~v.isin(stray), "")
        notation = _number_pattern(v)
    present = v[v != ""]
    if present.nunique() <= 1:
        return None, "constant (one value or empty)"
    if ID_NAME.search(_name(col)) and present.nunique() >= 0.95 * len(present):  # an identifier, not a category
        repeated, empty = int(present.duplicated().sum()), n - len(present)
        if not repeated and not empty:
            return None, f"{_another_id(draft)} (unique, named like an id)"
        draft.warnings.append(
            f"'{col}' is named like an id but has {repeated} repeated and {empty} empty value(s): left out of the "
            "models; if it is the CRM's id, mend those rows and pass --id"
        )
        return None, f"named like an id ({repeated} repeated, {empty} empty values): not a model input"
    if DATE_NAME.search(_name(col)) and (style := _numeric_date(present)):
        draft.dates.append(col)
        draft.date_formats[col] = style
        return None, f"a date ({style.replace('_', ' ')}; not a model input)"
    if set(present.str.casefold().unique()) <= {*YES, *NO} and present.nunique() == 2:
        _keep_placeholders(draft, placeholders)
        for spelling in sorted(present.unique()):
            found = draft.yes_values if spelling.casefold() in YES else draft.no_values
            if spelling not in found:
                found.append(spelling)
        return "yes_no", f"two values, {sorted(present.unique())}"
    if notation is not None:
        x = _to_float(v, draft.decimal, draft.thousands)
        if present.nunique() == len(present) == n and (x == x.round()).all():
            return None, f"{_another_id(draft)} (unique whole numbers)"
        if CONTACT_NAME.search(col) and present.str.count(r"\d").median() >= 4:  # "Mobile sessions" (0-9) is a count
            return None, "a phone number or postal code (digits, not a quantity): list it as categorical to use it"
        _keep_placeholders(draft, placeholders)
        sentinels = _sentinels(x)
        if sentinels:
            draft.sentinels[col] = sentinels
        rest = x[~x.isin(sentinels)]
        if rest.min() >= 0:
            draft.ranges[col] = (0.0, None)
        return "numeric", "numbers" + (f"; {sentinels} look like 'missing' codes" if sentinels else "")
    if calendar := _calendar_part(present):
        _keep_placeholders(draft, placeholders)
        return "categorical", f"{calendar} (a seasonal input, not a date)"
    if _is_date(present):
        draft.dates.append(col)
        style, why = _date_style(present)
        if style:
            draft.date_formats[col] = style
        if "REVIEW" in why:
            draft.warnings.append(f"'{col}': {why}")
        return None, "a date (not a model input" + (f"; {why}" if why else "") + ")"
    if present.nunique() > 50 and present.nunique() / len(present) > 0.5:
        return None, f"free text or near-unique ({present.nunique()} distinct values)"
    counts = present.value_counts()
    if len(counts) > 50 and counts[counts >= RARE_SHARE * n].sum() < 0.5 * len(present):
        return None, (
            f"mostly rare values ({len(counts)} distinct; most filled-in leads have a value shared by under "
            f"{RARE_SHARE:.0%} of leads: names or notes, which a model groups as one level)"
        )
    _keep_placeholders(draft, placeholders)
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
    if not encoding and enc == "utf-8" and (bad := first_non_utf8(path)) is not None:  # the head was UTF-8, a later line not
        enc, enc_why = _single_byte(path, f"UTF-8 until line {bad.line} (byte {bad.byte}), not after")
    text = head.decode("utf-8-sig" if enc == "utf-8" else enc, errors="ignore")
    if not text.strip():
        raise LeadDataError(f"{path.name}: the export is empty (only blank lines or a byte-order mark): no header, no leads")
    sep, sep_why = (separator, "given") if separator else sniff_separator(text)
    df = _read(path, sep, enc)
    if df.empty:
        raise LeadDataError(f"{path.name}: the export has a header but no rows: no leads to profile")
    df.columns = [str(c).strip() for c in df.columns]
    pos, neg, target_why = infer_target(df, target, positive)
    undecided = int((df[target].str.strip() == "").sum())
    id_col, id_why = infer_id(df, id_column, {target})
    notations = [nt for c in df.columns if c not in (target, id_col) and (nt := _number_pattern(_without_placeholders(df[c])))]
    decimal, thousands, notation_note = number_notation(notations)
    draft = Draft(sep, enc, decimal, thousands, target, pos, neg, id_col, len(df))
    decided = df[target].str.strip()
    draft.conversion_rate = float((decided[decided != ""] == pos).mean())
    if notation_note:
        draft.warnings.append(notation_note)
    if id_col is None:
        draft.warnings.append(
            "no id column found: leads are numbered by their row, and scores with row numbers cannot be written back "
            "to the CRM; pass --id COLUMN if the export holds the CRM's id"
        )
    if undecided:
        draft.warnings.append(
            f"{undecided} lead(s) have no value in '{target}' (no outcome yet): remove them from the export before "
            "`leadscoring run`; score them afterwards"
        )
    draft.reasons.update(
        encoding=enc_why,
        separator=sep_why,
        target=target_why,
        id=id_why,
        decimal=("numbers use ',' as decimal mark" if decimal == "," else "numbers use '.'")
        + (f", {thousands!r} between thousands" if thousands else ""),
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
        draft.labels[col] = column_label(col)
        (draft.engagement if ENGAGEMENT.search(col) else draft.fit).append(col)
    for col, codes in draft.code_levels.items():
        if col not in draft.reasons:
            continue
        clash = [c for c in codes if c in draft.missing_values]
        if clash:
            draft.warnings.append(
                f"'{col}': {clash} is one of its codes, but another column writes it for 'missing' (data.missing_values "
                "applies to every column): REVIEW"
            )
        else:
            draft.reasons[col] += f"; {codes} read as a code (its other values are two-letter codes), not as missing"
    infer_creation_date(df, draft, target)
    return draft
