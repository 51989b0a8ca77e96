"""Development tools run from the repository (``make events``), not shipped with the package."""
