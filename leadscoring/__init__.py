"""leadscoring: predictive lead scoring from a CRM export.

The package holds all logic; the notebooks in ``03_Notebooks`` tell the story and call it.
"""

from __future__ import annotations

import logging

__version__ = "0.4.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
