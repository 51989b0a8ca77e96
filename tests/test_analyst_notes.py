"""The analyst's notes: parsing the notes file by notebook number, the public
``analyst_note`` function, the shipped notes file and the notes cells of the source
notebooks. (The run filling the cells is tested in test_runner.py, ``init`` writing the file
in test_init.py.)"""

from __future__ import annotations

import nbformat
import pytest

from leadscoring.config import ConfigError, analyst_note, load_config
from leadscoring.config.notes import NOTE_SECTIONS, NOTES_TAG, notes_template, parse_analyst_notes

from .conftest import ROOT, write_project

NOTES = """# Analyst's notes

Anything before the first numbered section belongs to no notebook.

## 03 EDA
<!-- we saw X, so we chose Y -->
We saw conversion double with visits, so we kept visits raw.

### A heading inside the note

It stays in the note.

```text
## 07 inside a code block is not a section
```

## 07 ML scoring

<!-- only the hint: empty -->

## 8 Segmentation

We saw two look-alike segments, so we chose k = 3.
"""


def test_each_section_goes_to_the_notebook_its_heading_numbers():
    notes = parse_analyst_notes(NOTES)
    assert sorted(notes) == ["03", "08"]  # 07 holds only a comment: empty
    assert notes["03"].startswith("We saw conversion double with visits") and "we saw X" not in notes["03"]
    assert "### A heading inside the note\n\nIt stays in the note." in notes["03"]
    assert "## 07 inside a code block" in notes["03"]
    assert notes["08"] == "We saw two look-alike segments, so we chose k = 3."
    assert "belongs to no notebook" not in " ".join(notes.values())


def test_a_second_section_for_one_notebook_names_file_and_line():
    with pytest.raises(
        ConfigError, match=r"^notes.md line 3: a second section for notebook 08 \('## 08 again'; the first is at line 1\)$"
    ):
        parse_analyst_notes("## 08 Segmentation\nA.\n## 08 again\nB.\n", source="notes.md")


def test_analyst_note_reads_the_configured_file(tmp_path):
    cfg = load_config(write_project(tmp_path, paths__analyst_notes="docs/my notes.md"))
    assert analyst_note(cfg, "08") is None  # no file yet: no note, no error
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "my notes.md").write_text(NOTES, encoding="utf-8")
    assert analyst_note(cfg, "08") == analyst_note(cfg, "08_segmentation") == analyst_note(cfg, "8")
    assert analyst_note(cfg, "08") == "We saw two look-alike segments, so we chose k = 3."
    assert analyst_note(cfg, "07") is None and analyst_note(cfg, "06") is None
    with pytest.raises(ValueError, match="expected a notebook number"):
        analyst_note(cfg, "segmentation")


def test_the_shipped_notes_file_has_the_four_sections_and_no_note():
    text = (ROOT / "01_Documentos" / "analyst_notes.md").read_text(encoding="utf-8")
    assert text == notes_template()  # the same file `leadscoring init` writes
    assert [line for line in text.splitlines() if line.startswith("## ")] == [f"## {t}" for t, _ in NOTE_SECTIONS.values()]
    assert parse_analyst_notes(text) == {}  # hints only: every notebook shows the placeholder


@pytest.mark.parametrize("number", sorted(NOTE_SECTIONS))
def test_source_notebooks_have_the_notes_cell_second(number):
    (path,) = (ROOT / "03_Notebooks").glob(f"{number}_*.ipynb")
    nb = nbformat.read(path, as_version=4)
    cell = nb.cells[1]
    assert cell.cell_type == "markdown" and cell.metadata.get("tags") == [NOTES_TAG]
    # what a data scientist sees in JupyterLab: where the notes come from
    assert "`01_Documentos/analyst_notes.md`" in cell.source and f'"## {NOTE_SECTIONS[number][0]}"' in cell.source
    tagged = [c for c in nb.cells if NOTES_TAG in c.metadata.get("tags", [])]
    assert tagged == [cell]
