"""The nightly cycle as a Prefect flow: one task running the leadscoring command line (the
flow imports nothing of leadscoring; the project keeps its own environment).

    prefect deployment: prefect deploy docs/scheduling/prefect_flow.py:leadscoring_cycle --cron "30 2 * * *"

The CRM token must be in the worker's environment (the variable named by crm.token_env).
"""

import subprocess

from prefect import flow, get_run_logger, task

PROJECT = "/srv/leadscoring"
COMMAND = ["/srv/leadscoring/.venv/bin/leadscoring", "cycle", "--leads", "/srv/exports/open_leads.csv", "--no-progress"]
#: Another cycle was still running: this one did nothing.
LOCKED = 75


@task(retries=0)
def cycle() -> int:
    done = subprocess.run(COMMAND, cwd=PROJECT, capture_output=True, text=True, check=False)
    logger = get_run_logger()
    logger.info(done.stdout)
    if done.returncode == LOCKED:
        logger.warning("another leadscoring cycle is running; nothing done")
        return done.returncode
    if done.returncode != 0:
        raise RuntimeError(f"leadscoring cycle exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.returncode


@flow(name="leadscoring-cycle")
def leadscoring_cycle() -> int:
    return cycle()


if __name__ == "__main__":
    leadscoring_cycle()
