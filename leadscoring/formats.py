"""Numbers as a person reads them, in the configuration's number style (``report.decimal_mark``
and ``report.thousands_separator``): ``35,490``, ``12.4``, ``24 %``, ``—`` for a missing
value, never ``3.549e+04`` nor ``NaN``.

The one formatter of the project's reports: the notebooks' tables
(:mod:`leadscoring.notebook.tables`), the client summary and the run's index page use it.
A notebook sets the style once (:func:`use_style`, called by ``setup``); a caller that
knows its configuration may pass ``style=`` instead.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

#: What a missing value is shown as.
MISSING = "—"


@dataclass(frozen=True)
class NumberStyle:
    """How numbers are written: the decimal mark and the thousands separator ("" for none)."""

    decimal_mark: str = "."
    thousands_separator: str = ","

    def apply(self, text: str) -> str:
        """``text`` written with Python's ``,`` and ``.`` in this style."""
        if (self.decimal_mark, self.thousands_separator) == (".", ","):
            return text
        return text.translate(str.maketrans({",": self.thousands_separator, ".": self.decimal_mark}))


_style = NumberStyle()


def use_style(style: NumberStyle) -> None:
    """Make ``style`` the default of :func:`number`, :func:`percent` and :func:`count` in this
    process (a notebook's kernel: ``leadscoring.notebook.project.setup`` calls it)."""
    global _style
    _style = style


def is_missing(v: Any) -> bool:
    """None, NaN or pandas' missing markers."""
    if v is None:
        return True
    try:
        return bool(v != v)  # NaN, NaT
    except TypeError:  # pandas' NA: its truth is ambiguous
        return True
    except ValueError:  # an array
        return False


def number(v: Any, style: NumberStyle | None = None) -> str:
    """A number as a person reads it: ``35,490``, ``12.4``, ``0.923``, ``0.0083``; never
    ``3.549e+04``; ``—`` when missing."""
    style = style or _style
    if is_missing(v):
        return MISSING
    if isinstance(v, bool) or (type(v).__module__ == "numpy" and type(v).__name__ in ("bool", "bool_")):  # no numpy import
        return "yes" if v else "no"
    if isinstance(v, numbers.Integral):
        return style.apply(f"{int(v):,}")
    x = float(v)
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x == 0 or abs(x) < 5e-5:
        return "0"
    if abs(x) >= 1000:
        text = f"{x:,.0f}"
    elif abs(x) >= 10:
        text = f"{x:,.1f}".rstrip("0").rstrip(".")
    elif abs(x) >= 1:
        text = f"{x:.2f}".rstrip("0").rstrip(".")
    else:
        text = f"{x:.3g}" if abs(x) >= 0.001 else f"{x:.4f}".rstrip("0")
    return style.apply(text)


def fixed(v: Any, digits: int = 3, signed: bool = False, style: NumberStyle | None = None) -> str:
    """A figure with ``digits`` decimals, as model figures are compared: ROC-AUC ``0.924``,
    a difference ``+0.0012`` (``signed``); ``—`` when missing."""
    style = style or _style
    if is_missing(v):
        return MISSING
    return style.apply(f"{float(v):{'+' if signed else ''}.{digits}f}")


def percent(v: Any, digits: int = 0, style: NumberStyle | None = None) -> str:
    """A share (0-1) as ``24 %`` (``0.5 %`` under 1 %); ``—`` when missing."""
    style = style or _style
    if is_missing(v):
        return MISSING
    x = 100 * float(v)
    if digits == 0 and 0 < abs(x) < 1:
        return style.apply(f"{x:.1f} %")
    return style.apply(f"{x:,.{digits}f} %")


def count(v: Any, style: NumberStyle | None = None) -> str:
    """A count with thousands separators: ``35,490``; ``—`` when missing."""
    style = style or _style
    if is_missing(v):
        return MISSING
    return style.apply(f"{round(float(v)):,}")
