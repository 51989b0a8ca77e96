"""Deprecated: ``leadscoring.training.reasons`` is now :mod:`leadscoring.training.explanations`.

Kept so that notebooks copied into a project by an earlier ``leadscoring init`` still run;
import from ``leadscoring.training.explanations`` instead."""

import warnings

from leadscoring.training.explanations import *  # noqa: F403

warnings.warn(
    "leadscoring.training.reasons is deprecated: import from leadscoring.training.explanations",
    DeprecationWarning,
    stacklevel=2,
)
