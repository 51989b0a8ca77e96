"""Django settings of the BottleCRM (django-crm) the test suite runs: its own settings, on a
SQLite file instead of PostgreSQL (row-level security is PostgreSQL-only and BottleCRM skips
it on SQLite), Celery tasks run in the request (no Redis), uploads in a throwaway folder.

Loaded by ``django-admin`` in BottleCRM's virtual environment (``tools/bottlecrm.py`` puts this
folder on ``PYTHONPATH``), never by leadscoring. The environment gives ``BOTTLECRM_DB`` (the
SQLite file), ``BOTTLECRM_MEDIA`` (uploads), and ``SECRET_KEY`` (at least 32 bytes: it signs
the JWTs) with ``ENV_TYPE=dev``, read by BottleCRM's settings themselves.
"""

import os

from crm.settings import *  # noqa: F403 - BottleCRM's settings, then what differs

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["BOTTLECRM_DB"],
        # Concurrent writers (a push sends several requests at once) wait for each other
        # instead of failing with "database is locked".
        "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
    }
}
CELERY_BROKER_URL = "memory://"
CELERY_RESULT_BACKEND = "cache+memory://"
CELERY_TASK_ALWAYS_EAGER = True
MEDIA_ROOT = os.environ["BOTTLECRM_MEDIA"]
