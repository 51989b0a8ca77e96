"""What a reader sees in a browser: checks of an HTML page rendered by headless Chromium.

Package-free (the standard library and pytest's skip marker only), so any test can check
any HTML page the project writes::

    problems = page_problems(html_path, cfg.data.labels)   # [] when the page reads well
    screenshot(html_path, run_dir / "screenshots" / "page.png")

:func:`page_problems` renders the page (``chromium --dump-dom``: what the browser builds,
scripts run), takes the visible text (no ``<script>``, ``<style>`` or ``<head>``), and
reports, one line each: ``NaN``-like values, numbers in scientific notation (``3.5e+04``),
``col_0``-style generated names, a configured column name where the configuration has a
label for it, a table whose first column is a 0..n index, and an ``<img>`` without ``alt``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from html.parser import HTMLParser
from pathlib import Path

import pytest

#: The browser: the distribution's Chromium (``.ci/run`` installs it when it can).
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

requires_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (.ci/run installs it with apt-get when run as root)"
)

#: Seconds one browser call may take.
TIMEOUT = 120

_INVISIBLE = {"script", "style", "head", "title", "noscript", "template"}
_MISSING = re.compile(r"(?<![\w-])(NaN|nan|NaT|<NA>)(?![\w-])")
_MISSING_CELL = {"None", "null", "inf", "-inf"}  # only a whole table cell: in prose they are words
_SCIENTIFIC = re.compile(r"\d+(?:\.\d+)?[eE][+-]\d+")
_GENERATED = re.compile(r"(?<![A-Za-z0-9])(col_\d+|feature_\d+|Unnamed: ?\d+)\b")


class _Page(HTMLParser):
    """Visible text, tables (rows of cell texts) and images of a rendered page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.images: list[dict[str, str | None]] = []
        self._hidden = 0
        self._open: list[list[list[str]]] = []  # tables being read (nested tables)
        self._cell: list[str] | None = None
        self._in_thead = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _INVISIBLE:
            self._hidden += 1
        elif tag == "img":
            self.images.append(dict(attrs))
        elif tag == "table":
            self._open.append([])
        elif tag == "thead":
            self._in_thead += 1
        elif tag == "tr" and self._open and not self._in_thead:
            self._open[-1].append([])
        elif tag in ("td", "th") and self._open and self._open[-1] and not self._in_thead:
            self._cell = []
        if tag in ("p", "div", "br", "tr", "td", "th", "li", "h1", "h2", "h3", "h4", "caption", "table"):
            self.text.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE:
            self._hidden = max(0, self._hidden - 1)
        elif tag == "thead":
            self._in_thead = max(0, self._in_thead - 1)
        elif tag in ("td", "th") and self._cell is not None:
            self._open[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table" and self._open:
            self.tables.append([row for row in self._open.pop() if row])
        if tag in ("td", "th"):
            self.text.append(" ")

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        raise RuntimeError("chromium is not installed")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:  # its own profile: parallel browsers never share one
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=True,
        )


def rendered_dom(html_path: str | Path) -> str:
    """The page's DOM once Chromium has loaded it (``--dump-dom``)."""
    return _run(["--dump-dom", Path(html_path).resolve().as_uri()]).stdout


def read_page(dom: str) -> _Page:
    """The visible text, tables and images of a rendered DOM."""
    page = _Page()
    page.feed(dom)
    page.close()
    return page


def visible_text(html_path: str | Path) -> str:
    """What a reader of the page sees, as plain text."""
    return "".join(read_page(rendered_dom(html_path)).text)


def _excerpt(text: str, match: re.Match[str]) -> str:
    start, end = max(0, match.start() - 30), min(len(text), match.end() + 30)
    return " ".join(text[start:end].split())


def dom_problems(dom: str, labels: Mapping[str, str] | None = None) -> list[str]:
    """The problems of a rendered DOM (see the module's docstring), one line each."""
    page = read_page(dom)
    text = "".join(page.text)
    problems = []
    for pattern, what in (
        (_MISSING, "a missing value shown as"),
        (_SCIENTIFIC, "scientific notation"),
        (_GENERATED, "a generated name"),
    ):
        for m in pattern.finditer(text):
            problems.append(f"{what} {m.group(0)!r}: …{_excerpt(text, m)}…")
    for name, label in (labels or {}).items():
        if name == label:
            continue
        for m in re.finditer(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text):
            problems.append(f"column name {name!r} shown instead of its label {label!r}: …{_excerpt(text, m)}…")
    for i, rows in enumerate(page.tables, 1):
        for cell in sorted({c for row in rows for c in row} & _MISSING_CELL):
            problems.append(f"table {i} has a cell {cell!r}")
        first = [row[0] for row in rows if row]
        if len(first) >= 2 and first == [str(k) for k in range(len(first))]:
            problems.append(f"table {i} starts with an index column 0..{len(first) - 1}")
    for img in page.images:
        if not (img.get("alt") or "").strip():
            problems.append(f"image without alt text: {(img.get('src') or '')[:60]!r}")
    return problems


def page_problems(html_path: str | Path, labels: Mapping[str, str] | None = None) -> list[str]:
    """What is wrong with the page as a browser shows it: a list of one-line problems,
    empty when it reads well. ``labels``: the configuration's ``data.labels``."""
    return [f"{Path(html_path).name}: {p}" for p in dom_problems(rendered_dom(html_path), labels)]


def screenshot(html_path: str | Path, png_path: str | Path, size: tuple[int, int] = (1200, 2400)) -> Path:
    """A PNG of the page as Chromium shows it (``size``: the window, width by height)."""
    png = Path(png_path).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    _run([f"--screenshot={png}", f"--window-size={size[0]},{size[1]}", "--hide-scrollbars", Path(html_path).resolve().as_uri()])
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot of {html_path}")
    return png


def print_pdf(html_path: str | Path, pdf_path: str | Path) -> Path:
    """The page printed by Chromium (its print CSS applies), without header and footer."""
    pdf = Path(pdf_path).resolve()
    pdf.parent.mkdir(parents=True, exist_ok=True)
    _run([f"--print-to-pdf={pdf}", "--no-pdf-header-footer", Path(html_path).resolve().as_uri()])
    if not pdf.is_file():
        raise RuntimeError(f"chromium printed no PDF of {html_path}")
    return pdf


def pdf_pages(pdf_path: str | Path) -> int:
    """The number of pages of a PDF: its ``/Type /Page`` objects (not ``/Pages``)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", Path(pdf_path).read_bytes()))
