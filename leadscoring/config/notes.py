"""The analyst's notes: what this project's analyst saw and decided, in their own words.

The notebooks' findings are generated sentences, right for any client's export; what *this*
project's analyst concluded is written by hand in one markdown file (``paths.analyst_notes``,
by default ``01_Documentos/analyst_notes.md``), one section per notebook::

    ## 08 Segmentation
    We saw two segments that differ only in channel, so we kept k = 3.

A section belongs to the notebook whose number starts its level-2 heading (``## 08 ...``) and
runs to the next numbered level-2 heading; any other heading inside it is part of the note.
HTML comments (the hints ``leadscoring init`` writes) are not part of a note, so a section
holding only its hint is empty. The production run copies each notebook's note into the
notebook's markdown cell tagged :data:`NOTES_TAG` before executing it; an empty or missing
section, or a missing file, shows a short placeholder saying where to write the note.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from leadscoring.config.sections import ConfigError

if TYPE_CHECKING:
    from leadscoring.config import ProjectConfig

#: The tag of the markdown cell the production run fills with a notebook's note.
NOTES_TAG = "analyst-notes"

#: The notebooks with an analyst's notes cell: their number, section heading and the
#: one-line hint ``leadscoring init`` writes under it.
NOTE_SECTIONS: dict[str, tuple[str, str]] = {
    "03": ("03 EDA", "we saw X in the conversion rates, so we chose Y"),
    "06": ("06 Variable selection", "we saw X in the leakage audit or the importances, so we kept or dropped Y"),
    "07": ("07 ML scoring", "we saw X in the cross-validation, so we chose model or threshold Y"),
    "08": ("08 Segmentation", "we saw X in the segment profiles, so we chose Y segments or names"),
}

_SECTION = re.compile(r"^##[ \t]+(\d+)(?=\D|$)")
_FENCE = re.compile(r"^[ \t]{0,3}(```|~~~)")
_COMMENT = re.compile(r"<!--.*?-->", re.S)


def notebook_number(notebook: str) -> str:
    """The two-digit number of a notebook given as ``"08"``, ``"8"`` or ``"08_segmentation"``."""
    head = notebook.strip().split("_", 1)[0]
    if not head.isdigit():
        raise ValueError(f"notebook {notebook!r}: expected a notebook number such as '08' or a name such as '08_segmentation'")
    return f"{int(head):02d}"


def parse_analyst_notes(text: str, source: str = "analyst notes") -> dict[str, str]:
    """The notes of ``text`` by notebook number (``{"08": "We saw ..."}``), each stripped of
    HTML comments and surrounding blank lines; empty sections are left out. Headings inside
    fenced code blocks do not start sections. A second section for one notebook is a
    :class:`~leadscoring.config.ConfigError` naming ``source``, the line and the heading."""
    sections: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    current: list[str] | None = None
    fenced = False
    for lineno, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else _SECTION.match(line)
        if heading:
            number = f"{int(heading.group(1)):02d}"
            if number in sections:
                raise ConfigError(
                    f"{source} line {lineno}: a second section for notebook {number} "
                    f"({line.strip()!r}; the first is at line {first_line[number]})"
                )
            first_line[number] = lineno
            current = sections[number] = []
        elif current is not None:
            current.append(line)
    notes = {number: _COMMENT.sub("", "\n".join(lines)).strip() for number, lines in sections.items()}
    return {number: note for number, note in notes.items() if note}


def read_analyst_notes(cfg: ProjectConfig) -> dict[str, str]:
    """Every note of the project's notes file (``paths.analyst_notes``) by notebook number;
    none when the file does not exist."""
    path = cfg.path("analyst_notes")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_analyst_notes(text, source=str(path))


def analyst_note(cfg: ProjectConfig, notebook: str) -> str | None:
    """The analyst's note for ``notebook`` (``"08"`` or ``"08_segmentation"``) as markdown
    text, or None when its section is missing or empty or the notes file does not exist."""
    return read_analyst_notes(cfg).get(notebook_number(notebook))


def section_heading(notebook: str) -> str:
    """The heading of a notebook's section, e.g. ``## 08 Segmentation`` (``## 05`` for a
    notebook without a shipped section)."""
    number = notebook_number(notebook)
    return "## " + NOTE_SECTIONS.get(number, (number, ""))[0]


def note_cell_source(cfg: ProjectConfig, notebook: str, notes: dict[str, str]) -> str:
    """The markdown the production run puts in a notebook's notes cell: the note under an
    "Analyst's notes" heading, or a short italic placeholder saying where to write it.
    ``notes`` is :func:`read_analyst_notes`' result (read once per run)."""
    note = notes.get(notebook_number(notebook))
    if note:
        return f"## Analyst's notes\n\n{note}"
    return f'*No analyst\'s note yet: write it in `{cfg.paths.analyst_notes}`, section "{section_heading(notebook)}".*'


def notes_template() -> str:
    """The notes file ``leadscoring init`` creates: the four sections, each with its hint in
    an HTML comment (so a section holding only its hint counts as empty)."""
    lines = [
        "# Analyst's notes",
        "",
        "<!-- What this project's analyst saw and decided, one section per notebook. The production",
        "     run copies each section into its notebook (and the HTML reports) before executing it.",
        "     Write below the hints; a section without text shows a placeholder. -->",
    ]
    for title, hint in NOTE_SECTIONS.values():
        lines += ["", f"## {title}", "", f"<!-- {hint} -->"]
    return "\n".join(lines) + "\n"
