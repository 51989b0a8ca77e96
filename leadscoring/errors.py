"""Errors caused by the user's input, reported as one line (the CLI prints them without a
traceback)."""

from __future__ import annotations


class LeadDataError(ValueError):
    """The leads do not match the configured layout (message names what is wrong)."""


class OutputPathError(ValueError):
    """An output path that must not or cannot be written (the input itself, raw data, a folder)."""
