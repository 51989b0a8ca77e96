"""The nightly cycle as an Airflow DAG: one BashOperator running the leadscoring command line
(the DAG imports nothing of leadscoring; the project keeps its own environment). Put this file
in the DAGs folder; the CRM token must be in the worker's environment (crm.token_env)."""

from datetime import datetime

from airflow import DAG
from airflow.operators.bash import BashOperator

with DAG(
    dag_id="leadscoring_cycle",
    schedule="30 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,  # a missed night is not replayed: the next cycle catches up by itself
    max_active_runs=1,
) as dag:
    BashOperator(
        task_id="cycle",
        bash_command="cd /srv/leadscoring && .venv/bin/leadscoring cycle --leads /srv/exports/open_leads.csv --no-progress",
        skip_on_exit_code=75,  # another cycle was still running: skipped, not failed
    )
