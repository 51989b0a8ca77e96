"""``leadscoring init``: a new project folder for a client's export.

Creates the fixed layout (``01_Documentos/ 02_Datos/ 03_Notebooks/ 04_Modelos/
05_Resultados/``), copies the export unmodified into ``02_Datos/01_Originales/`` (read-only),
copies the ten notebooks shipped with the package, drafts ``01_Documentos/config.yaml``
from the export's profile (:mod:`leadscoring.ingest.profile`), each inference commented
with its reason, and writes ``01_Documentos/analyst_notes.md`` (a section with a hint for
each notebook with an analyst's notes cell, for the analyst to fill in). The folder is built
beside its destination, in a hidden folder of a fresh name (:func:`tempfile.mkdtemp`), and
renamed into place, so a failed ``init`` leaves nothing half-made; an existing folder is
never touched, and nothing ``init`` did not create is deleted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from leadscoring.config import ConfigError, DataConfig, GradesConfig, LeakageConfig, ScoringConfig, load_config
from leadscoring.config.notes import notes_template
from leadscoring.ingest.profile import Draft, profile_export
from leadscoring.training.leakage import outcome_like_stems

#: ``init --date NONE``: no creation date, a random (stratified) validation split.
NO_DATE = "NONE"
LAYOUT = (
    "01_Documentos",
    "02_Datos/01_Originales",
    "02_Datos/02_Validacion",
    "02_Datos/03_Trabajo",
    "03_Notebooks",
    "04_Modelos",
    "05_Resultados",
)


def shipped_notebooks() -> list[Path]:
    """The ten numbered notebooks shipped with the package."""
    folder = Path(str(resources.files("leadscoring") / "templates" / "notebooks"))
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise ConfigError(f"no notebooks found in {folder}; reinstall the package")
    return found


#: Characters a YAML file cannot hold (C0 and C1 controls but tab and line feeds, surrogates)
#: or reads as line breaks (NEL, the Unicode line and paragraph separators): a header read
#: with the wrong encoding may bring some.
_NOT_YAML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")


def _q(value: object) -> str:
    """A YAML scalar or flow sequence (JSON is valid YAML; a character YAML cannot hold is
    written as its JSON escape, so the column name stays exact)."""
    return _NOT_YAML.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, ensure_ascii=False))


def _list(name: str, items: list[str], indent: str = "    ") -> str:
    return f"{indent}{name}: {_q(items)}\n"


#: Placeholders a later file of new leads may bring though the export had none: never a
#: real value in any column, so every drafted configuration reads them as missing.
ANY_EXPORT_MISSING = ("n/a", "#N/A", "NULL")


def _missing_values(d: Draft) -> list[str]:
    found = {v.casefold() for v in d.missing_values}
    return [*d.missing_values, *(v for v in ANY_EXPORT_MISSING if v.casefold() not in found)]


#: What each ``data.date_format`` reads, for the drafted configuration's comment.
DATE_EXAMPLES = {
    "day_first": "day first, e.g. 31.12.2024",
    "month_first": "month first, e.g. 12/31/2024",
    "unix_seconds": "seconds since 1970-01-01 (Unix time)",
    "unix_milliseconds": "milliseconds since 1970-01-01 (Unix time)",
    "excel_serial": "Excel serial days (since 1899-12-30)",
}


def _yes_no_lines(d: Draft) -> list[str]:
    """``yes_values``/``no_values`` when the yes/no columns use spellings beyond the defaults,
    the export's own first (the reasons write yes and no with the first word)."""
    lines = []
    for key, found in (("yes_values", d.yes_values), ("no_values", d.no_values)):
        default = list(DataConfig.model_fields[key].get_default(call_default_factory=True))
        extra = [v for v in found if v.casefold() not in {x.casefold() for x in default}]
        if extra:
            lines.append(f"  {key}: {_q(extra + default)}        # spellings found in the yes/no columns")
    return lines


def draft_config(d: Draft, export_name: str) -> str:
    """The commented ``config.yaml`` for a profiled export."""
    why = d.reasons
    left = "; ".join(f"{c} ({r})" for c, r in d.left_out.items())
    grades = GradesConfig()
    rate = f"{100 * d.conversion_rate:.1f} %" if d.conversion_rate is not None else "unknown"
    lines = [
        "# leadscoring configuration, drafted by `leadscoring init` from the export's contents.",
        "# Every inference says why; review the ones marked REVIEW, then `leadscoring run`.",
        "root: ..",
        "",
        "paths:",
        f"  raw_data: {_q('02_Datos/01_Originales/' + export_name)}",
        "  rules_table: 01_Documentos/scoring_rules.csv   # marketing's points table; absent: notebook 05 proposes one",
        "  analyst_notes: 01_Documentos/analyst_notes.md  # what you saw and decided, copied into notebooks 03, 06, 07, 08",
        "",
        "data:",
        f"  separator: {_q(d.separator)}        # {why['separator']}",
        f"  encoding: {d.encoding}        # {why['encoding']}",
        f"  decimal: {_q(d.decimal)}           # {why['decimal']}",
        f"  thousands: {_q(d.thousands)}",
    ]
    if d.id_column is None:
        lines += ["  id_column: row_number          # " + why["id"], "  id_from_row_number: true"]
    else:
        lines += [f"  id_column: {_q(d.id_column)}        # {why['id']}"]
    if d.date_column is not None:
        lines += [f"  date_column: {_q(d.date_column)}        # {why['date']}"]
        if d.date_format is not None:
            lines += [f"  date_format: {_q(d.date_format)}        # how its dates are written: {DATE_EXAMPLES[d.date_format]}"]
    lines += [
        f"  target_column: {_q(d.target)}",
        f"  positive_value: {_q(d.positive)}        # {why['target']}",
        f"  negative_value: {_q(d.negative)}",
        f"  missing_values: {_q(_missing_values(d))}        # placeholder values found in the export, and "
        "those any export may bring later",
        *_yes_no_lines(d),
        f"  allow_extra_columns: {'true' if d.left_out else 'false'}" + (f"        # left out: {left}" if d.left_out else ""),
        "  columns:",
        _list("numeric", d.numeric).rstrip("\n"),
        _list("categorical", d.categorical).rstrip("\n"),
        _list("yes_no", d.yes_no).rstrip("\n"),
        "  ranges:" + (" {}" if not d.ranges else ""),
        *[f"    {_q(c)}: {_q(list(r))}        # never negative in the export" for c, r in d.ranges.items()],
        "  numeric_missing:" + (" {}" if not d.sentinels else "") + "        # codes meaning 'missing'",
        *[f"    {_q(c)}: {_q(v)}" for c, v in d.sentinels.items()],
        "  # REVIEW: fields known only after the sales contact (status, stage, call duration, quality).",
        "  # A name alone keeps nothing out: the production run's leakage audit weighs every variable",
        "  # and marks these for review. Named from their names: "
        + (", ".join(f"{c} ({why_c})" for c, why_c in d.post_contact.items()) or "none"),
        "  # List a field here once you know it is filled in after the contact.",
        "  post_contact: []",
        "  use_post_contact_fields: false",
        "  labels:",
        *[f"    {_q(c)}: {_q(label)}" for c, label in d.labels.items()],
        "  # REVIEW: who the lead is (fit) and what the lead did (engagement), guessed from the names.",
        f"  fit_columns: {_q(d.fit)}",
        f"  engagement_columns: {_q(d.engagement)}",
        "",
        "scoring:",
        f"  # REVIEW: buckets from this export's conversion rate ({rate}): the first from 3 times it, the",
        "  # second from 1.5 times (a score is 100 x the probability; at most the defaults); name them and",
        "  # their actions as the client's sales team does.",
        "  buckets:",
        *[
            f"    - {{name: {b.name}, min_score: {m}, action: {b.action}}}"
            for b, m in zip(ScoringConfig().buckets, [*bucket_cutoffs(d.conversion_rate), 0], strict=True)
        ],
        "  # REVIEW: letter grades by shares of the leads (best first), learned on the training leads'",
        "  # out-of-fold scores, so they fit this export's conversion rate; or calls_per_week: what the",
        "  # sales team can call.",
        "  grades:",
        f"    names: {_q(grades.names)}",
        f"    min_scores: {_q(grades.min_scores)}",
        f"    shares: {_q(DRAFT_GRADE_SHARES)}",
        "  # A row of new leads that fails validation (text in a number, an unknown yes/no answer, a",
        "  # repeated id): set_aside scores the other rows and writes it, with its line and problem, to",
        "  # OUTPUT.rejected.csv (the nightly cycle: rejected_rows.csv in its state folder); stop refuses",
        "  # the whole file. A file with more than max_bad_share of its rows set aside is refused anyway.",
        "  bad_rows: set_aside",
        "  max_bad_share: 0.05",
        "",
        "report:",
        "  # client_name: Acme        # REVIEW: named in the client summary's title",
        f"  decimal_mark: {_q(d.decimal)}        # reports write numbers as the export does",
        f"  thousands_separator: {_q(_thousands_mark(d))}",
        "",
        "run:",
        "  kernel_name: leadscoring",
        "  report_notebooks: [08_segmentation, 09_evaluation]",
        "",
    ]
    return _NOT_YAML.sub("?", "\n".join(lines))  # what is left is in comments


#: The grades a new project drafts: shares of the leads, best first (learned on out-of-fold scores).
DRAFT_GRADE_SHARES = [0.1, 0.2, 0.3, 0.4]


def bucket_cutoffs(rate: float | None) -> tuple[int, int]:
    """(first, second) minimum scores of the default buckets (``scoring.buckets``: HOT, WARM)
    for an export converting at ``rate``: 3 and 1.5 times the rate as a 0-100 score, at most
    the defaults (80 and 50: a 38 % export keeps them; an 8 % one gets 24 and 12, where 80
    would hold almost no lead)."""
    top, second = (b.min_score for b in ScoringConfig().buckets[:2])
    if rate is None:
        return top, second
    hot = min(top, max(2, round(300 * rate)))
    warm = min(second, max(1, round(150 * rate)))
    return hot, min(warm, hot - 1)


def _thousands_mark(d: Draft) -> str:
    """The reports' thousands separator: the export's own when a report can use it, else the
    usual partner of its decimal mark (``.`` beside a decimal comma, ``,`` beside a point)."""
    if d.thousands in (",", ".", " ", "\u202f", "'") and d.thousands != d.decimal:
        return d.thousands
    return "." if d.decimal == "," else ","


def summary(d: Draft, dest: Path) -> str:
    """What ``init`` inferred, in a few lines."""
    out = [
        f"created {dest} ({d.rows:,} leads; separator {d.separator!r}, {d.encoding}, decimal {d.decimal!r})",
        f"  target {d.target!r}: {d.reasons['target']}",
        f"  id: {d.id_column!r} ({d.reasons['id']})" if d.id_column else f"  id: {d.reasons['id']}",
        f"  {len(d.numeric)} numeric, {len(d.categorical)} categorical, {len(d.yes_no)} yes/no columns",
    ]
    out += [f"  left out {c}: {r}" for c, r in d.left_out.items()]
    out += [f"  missing codes in {c}: {v}" for c, v in d.sentinels.items()]
    if "date" in d.reasons:
        out.append(f"  creation date: {d.date_column!r} ({d.reasons['date']})" if d.date_column else f"  {d.reasons['date']}")
    out += [f"  WARNING: {w}" for w in d.warnings]
    out += [f"  REVIEW named like a post-contact field (the leakage audit decides): {c}" for c in d.post_contact]
    cmd = _command()
    out.append(
        f"next: review {dest / '01_Documentos' / 'config.yaml'} (the REVIEW lines), then in {dest}: "
        f"`{cmd} validate`, `{cmd} run --quick` (a smoke run on a sample), `{cmd} run`"
    )
    return "\n".join(out)


def _command() -> str:
    """The ``leadscoring`` command of this installation, as an absolute path when it sits
    beside this Python (a project's venv is not on the PATH), else its bare name."""
    beside = Path(sys.executable).parent / "leadscoring"
    return str(beside.absolute()) if beside.is_file() else "leadscoring"


def init_project(
    dest: str | os.PathLike[str],
    export: str | os.PathLike[str],
    target: str,
    *,
    positive: str | None = None,
    id_column: str | None = None,
    date: str | None = None,
    separator: str | None = None,
    encoding: str | None = None,
) -> tuple[Path, Draft]:
    """Create a project folder for ``export`` (see module docstring)."""
    dest, export = Path(dest), Path(export)
    if dest.exists():
        raise ConfigError(f"{dest}: already exists; `init` creates a new project folder and never touches one")
    draft = profile_export(export, target, positive=positive, id_column=id_column, separator=separator, encoding=encoding)
    leakage = LeakageConfig()  # the leakage audit's own list of outcome-like names
    for col in (*draft.numeric, *draft.categorical, *draft.yes_no):
        if found := outcome_like_stems(col, leakage):
            draft.post_contact[col] = f"its name reads like a sales outcome, status or call detail ({found[0]})"
    if date is not None and date.upper() == NO_DATE:
        if draft.date_column is not None:
            draft.left_out[draft.date_column] = "a date (not a model input); --date NONE: random validation split"
        draft.date_column = None
        draft.reasons["date"] = "--date NONE: random validation split"
        draft.warnings.clear()
    elif date is not None:
        if date not in draft.dates:
            known = [*draft.numeric, *draft.categorical, *draft.yes_no, *draft.left_out, draft.target, draft.id_column]
            why = "its values do not read as dates" if date in known else "no such column in the export"
            raise ConfigError(f"{export.name}: --date {date!r}: {why}; date columns found: {draft.dates or 'none'}")
        for role in (draft.numeric, draft.categorical, draft.yes_no, draft.fit, draft.engagement):
            if date in role:
                role.remove(date)
        draft.labels.pop(date, None)
        draft.left_out.pop(date, None)
        draft.date_column = date
        draft.date_format = draft.date_formats.get(date)
        draft.reasons["date"] = "given: validation on the most recent leads, forward-chaining cross-validation"
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name of our own beside the destination: an existing folder (even one named
    # like an earlier init's scratch folder) is never reused nor deleted.
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".init", dir=dest.parent))
    placed = False
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp creates 0700; the project is an ordinary folder
        for sub in LAYOUT:
            (tmp / sub).mkdir(parents=True)
        raw = tmp / "02_Datos" / "01_Originales" / export.name
        shutil.copyfile(export, raw)
        raw.chmod(0o444)  # the client's export is never modified
        for nb in shipped_notebooks():
            shutil.copyfile(nb, tmp / "03_Notebooks" / nb.name)
        (tmp / "01_Documentos" / "config.yaml").write_text(draft_config(draft, export.name), encoding="utf-8")
        (tmp / "01_Documentos" / "analyst_notes.md").write_text(notes_template(), encoding="utf-8")
        try:  # the draft must be a valid configuration
            load_config(tmp / "01_Documentos" / "config.yaml")
        except ConfigError as exc:
            why = str(exc).split(": ", 1)[-1]
            raise ConfigError(
                f"{export.name}: the configuration drafted from it does not load ({why}); "
                f"check the export's encoding ({draft.encoding}: --encoding) and separator ({draft.separator!r}: --separator)"
            ) from None
        if dest.exists():  # made meanwhile: never replaced
            raise ConfigError(f"{dest}: already exists; `init` creates a new project folder and never touches one")
        os.replace(tmp, dest)
        placed = True
    finally:
        if not placed:
            shutil.rmtree(tmp, ignore_errors=True)  # only the folder made above
    return dest, draft
