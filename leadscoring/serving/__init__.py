"""Scoring new leads with the verified models: the scorer, batch engines (local and dask),
the HTTP service and CRM payloads. Speed shortcuts live in :mod:`leadscoring.serving.fast`.
Optional extras (FastAPI, dask) are imported only by the modules that need them.
"""
