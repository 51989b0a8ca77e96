"""Behavioural events (web analytics, activity logs) turned into per-lead features, point in
time, by SQL: DuckDB embedded by default (:mod:`.engine`), BigQuery at scale (:mod:`.bigquery`)."""
