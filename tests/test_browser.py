"""The browser checks of tests/browser.py can fail: a page with every problem they look for
is reported line by line, the same page without them passes."""

from __future__ import annotations

import pytest

from .browser import page_problems, pdf_pages, requires_chromium

BAD = """<!doctype html><html><head><title>NaN col_0</title><style>.x::after{content:"NaN"}</style></head><body>
<h1>Report</h1>
<p>Conversions: NaN. Leads: 3.5e+04. Column col_0 and origen.</p>
<script>var hidden = "1e-05 NaN col_1";</script>
<table><thead><tr><th></th><th>rate</th></tr></thead>
<tbody><tr><th>0</th><td>1</td></tr><tr><th>1</th><td>2</td></tr><tr><th>2</th><td>None</td></tr></tbody></table>
<img src="chart.png">
<img src="other.png" alt="  ">
</body></html>"""

GOOD = """<!doctype html><html><head><title>ok</title></head><body>
<p>Conversions: 24 %. Leads: 35,000. Lead origin, time on website.</p>
<table><thead><tr><th>Grade</th><th>Leads</th></tr></thead>
<tbody><tr><td>A</td><td>1,200</td></tr><tr><td>B</td><td>—</td></tr></tbody></table>
<img src="data:image/png;base64,iVBORw0KGgo=" alt="Gains chart">
</body></html>"""


@requires_chromium
def test_the_check_reports_each_problem_and_passes_a_clean_page(tmp_path):
    bad, good = tmp_path / "bad.html", tmp_path / "good.html"
    bad.write_text(BAD, encoding="utf-8")
    good.write_text(GOOD, encoding="utf-8")
    problems = page_problems(bad, {"origen": "lead origin", "same": "same"})
    text = "\n".join(problems)
    assert all(p.startswith("bad.html: ") and "\n" not in p for p in problems)
    assert "a missing value shown as 'NaN'" in text
    assert "scientific notation '3.5e+04'" in text
    assert "a generated name 'col_0'" in text
    assert "column name 'origen' shown instead of its label 'lead origin'" in text
    assert "table 1 starts with an index column 0..2" in text
    assert "table 1 has a cell 'None'" in text
    assert text.count("image without alt text") == 2
    assert "col_1" not in text and "1e-0" not in text  # scripts, styles and the title are not visible
    assert page_problems(good, {"origen": "lead origin"}) == []


def test_pages_of_a_pdf_are_counted(tmp_path):
    pdf = tmp_path / "two.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj <</Type /Pages /Count 2>>\n2 0 obj <</Type /Page>>\n3 0 obj <</Type/Page/Parent 1 0 R>>\n")
    assert pdf_pages(pdf) == 2


@pytest.mark.parametrize("missing", ["NaN", "nan", "<NA>"])
@requires_chromium
def test_every_spelling_of_missing_is_caught(tmp_path, missing):
    page = tmp_path / "p.html"
    page.write_text(f"<html><body><p>rate {missing.replace('<', '&lt;')}</p></body></html>", encoding="utf-8")
    assert page_problems(page) == [f"p.html: a missing value shown as {missing!r}: …rate {missing}…"]
