"""BottleCRM, a real CRM in the test suite: a pytest plugin (``conftest.py`` loads it) with the
session fixture :func:`bottlecrm`.

The fixture starts BottleCRM (``django-admin runserver``, its own Python 3.12+ venv: see
``tools/bottlecrm.py``) on a free loopback port with a fresh copy of the migrated database,
signs a user in (``devlogin``), creates the user's organisation, two personal access tokens
(the user's own, and leadscoring's, limited to reading and writing leads) and the custom
fields of leads the scores go to (:data:`CUSTOM_FIELDS`), and yields a :class:`BottleCrm`:
``url``, ``token`` (leadscoring's) and what a sales user does, through BottleCRM's REST API.
The server is stopped by its process id at the end of the session.

Without a Python 3.12 or 3.13 the tests using it skip, saying so (the only skip). Tests marked
``bottlecrm`` run last, and when some are selected and the migrated database is not kept yet
(minutes, once per django-crm version: ``.cache/bottlecrm``), it is made in the background
from the start of the session, while the other tests run.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tools import bottlecrm as crm_env

#: Custom fields of leads made in every BottleCRM of the tests: key -> field type.
CUSTOM_FIELDS = {
    "lead_score": "number",
    "fit_score": "number",
    "engagement_score": "number",
    "score_bucket": "text",
    "lead_grade": "text",
}
#: The scopes of leadscoring's token: leads only.
LEADSCORING_SCOPES = ["leads:read", "leads:write"]
#: Seconds BottleCRM may take to answer once started.
START_TIMEOUT = 120
#: Seconds one REST call may take.
CALL_TIMEOUT = 60

_migration: subprocess.Popen[bytes] | None = None


# -- the plugin: BottleCRM tests last, the migration meanwhile ----------------------------------


@pytest.hookimpl(trylast=True)  # after ``-m`` deselected what it deselects
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move the tests marked ``bottlecrm`` to the end (in their order), and start migrating
    BottleCRM's database in the background when they need one that is not kept yet."""
    global _migration
    ours = [item for item in items if item.get_closest_marker("bottlecrm")]
    if not ours:
        return
    items[:] = [item for item in items if not item.get_closest_marker("bottlecrm")] + ours
    if not config.option.collectonly and crm_env.installed() and not crm_env.cached_db().exists():
        _migration = crm_env.start_migration()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop a background migration still running (its process group, by its id)."""
    if _migration is not None and _migration.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(_migration.pid, signal.SIGTERM)
        _migration.wait(timeout=30)


def _migrated_db() -> Path:
    """The kept migrated database: the background migration's, waited for, or made now."""
    if _migration is not None:
        code = _migration.wait(timeout=crm_env.MIGRATE_TIMEOUT)
        if code != 0:
            log = (crm_env.HOME / "migrate.log").read_text(encoding="utf-8", errors="replace")
            raise RuntimeError(f"BottleCRM: the background migration failed (exit {code}):\n{log[-2000:]}")
    return crm_env.migrated_db()


# -- the CRM as its users see it ----------------------------------------------------------------


class BottleCrm:
    """A running BottleCRM: its ``url``, leadscoring's ``token``, and what a sales user does
    there, each through its REST API as the user (a failed call raises AssertionError with
    BottleCRM's answer)."""

    def __init__(self, url: str, token: str, user_token: str) -> None:
        self.url = url
        self.token = token
        self._http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {user_token}"}, timeout=CALL_TIMEOUT)
        self._numbers = itertools.count(1)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, *, token: str | None = None) -> Any:
        """One REST call as the user (or with ``token``): the answer's JSON."""
        headers = {"Authorization": f"Bearer {token}"} if token else None
        answer = self._http.request(method, path, json=body, headers=headers)
        if answer.is_error:
            raise AssertionError(f"BottleCRM {method} {path}: HTTP {answer.status_code}: {answer.text[:500]}")
        return answer.json()

    def add_custom_field(self, key: str, field_type: str = "number", label: str | None = None) -> None:
        """A custom field of leads (Settings > Custom fields)."""
        label = label or key.replace("_", " ").capitalize()
        self.call("POST", "/api/custom-fields/", {"target_model": "Lead", "key": key, "label": label, "field_type": field_type})

    def create_lead(self, *, status: str | None = "assigned", **fields: Any) -> str:
        """A new lead (a name and an email unless given; conversion needs an email): its id."""
        n = next(self._numbers)
        body = {"title": f"Lead {n}", "first_name": "Lead", "last_name": f"Number {n}", "email": f"lead{n}@example.com"}
        body.update(fields)
        if status is not None:
            body["status"] = status
        return str(self.call("POST", "/api/leads/", body)["id"])

    def lead(self, lead_id: str) -> dict[str, Any]:
        """The lead as its page shows it (``lead_obj`` of ``GET /api/leads/<id>/``)."""
        return self.call("GET", f"/api/leads/{lead_id}/")["lead_obj"]

    def update(self, lead_id: str, **fields: Any) -> None:
        """Edit some of the lead's fields (``PATCH``: the others stay)."""
        self.call("PATCH", f"/api/leads/{lead_id}/", fields)

    def set_status(self, lead_id: str, status: str) -> None:
        self.update(lead_id, status=status)

    def convert(self, lead_id: str) -> None:
        """Convert the lead: BottleCRM makes an account, a contact and a deal of it (for good)."""
        self.set_status(lead_id, "converted")

    def close(self, lead_id: str) -> None:
        """Close the lead: out of the working list (lost)."""
        self.set_status(lead_id, "closed")

    def reopen(self, lead_id: str, status: str = "recycled") -> None:
        """Bring a closed lead back (recycled, or another open status)."""
        self.set_status(lead_id, status)

    def delete(self, lead_id: str) -> None:
        self.call("DELETE", f"/api/leads/{lead_id}/")

    def disconnect(self) -> None:
        self._http.close()


# -- starting and stopping it -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_until_up(server: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Until BottleCRM answers HTTP (any status), or fail with its output."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"BottleCRM stopped at start (exit {server.returncode}):\n{_tail(log)}")
        try:
            httpx.get(f"{url}/api/leads/", timeout=5)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"BottleCRM did not answer within {START_TIMEOUT} s:\n{_tail(log)}") from None
            time.sleep(0.2)  # a real server starting: nothing to fake


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(server.pid, signal.SIGKILL)
            server.wait(timeout=20)


def _devlogin(env: dict[str, str], work: Path, email: str) -> str:
    """A JWT for a new user (``django-admin devlogin EMAIL --create``)."""
    done = subprocess.run(
        [str(crm_env.venv_bin("django-admin")), "devlogin", email, "--create"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )
    found = re.search(r"access_token:\s+(\S+)", done.stdout)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"BottleCRM devlogin failed (exit {done.returncode}):\n{done.stdout[-1000:]}{done.stderr[-2000:]}")
    return found.group(1)


def _set_up(url: str, jwt: str) -> BottleCrm:
    """The user's organisation, tokens and custom fields, as the user would make them."""
    with httpx.Client(base_url=url, timeout=CALL_TIMEOUT) as http:

        def call(path: str, body: dict[str, Any], token: str) -> dict[str, Any]:
            answer = http.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
            if answer.is_error:
                raise RuntimeError(f"BottleCRM POST {path}: HTTP {answer.status_code}: {answer.text[:500]}")
            return answer.json()

        org = call("/api/org/", {"name": "Leadscoring tests"}, jwt)["org"]["id"]
        jwt = call("/api/auth/switch-org/", {"org_id": org}, jwt)["access_token"]
        user_token = call("/api/profile/tokens/", {"name": "sales desk"}, jwt)["token"]
        token = call("/api/profile/tokens/", {"name": "leadscoring", "scopes": LEADSCORING_SCOPES}, jwt)["token"]
    crm = BottleCrm(url, token, user_token)
    for key, field_type in CUSTOM_FIELDS.items():
        crm.add_custom_field(key, field_type)
    return crm


@pytest.fixture(scope="session")
def bottlecrm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BottleCrm]:
    """A running BottleCRM with a user, an organisation, leadscoring's token and the custom
    fields of :data:`CUSTOM_FIELDS` (see the module)."""
    if not crm_env.installed():  # `make install-test` installs it; a bare pytest may not have
        python = crm_env.find_python()
        if python is None:
            pytest.skip(crm_env.NO_PYTHON)
        crm_env.install(python)
    work = tmp_path_factory.mktemp("bottlecrm")
    db = work / "db.sqlite3"
    shutil.copyfile(_migrated_db(), db)
    secret = crm_env.new_secret_key()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / "runserver.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(crm_env.venv_bin("django-admin")), "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=work,  # BottleCRM's logging writes server.log and security_audit.log here
            env=crm_env.django_env(db, work, secret),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    crm: BottleCrm | None = None
    try:
        jwt = _devlogin(crm_env.django_env(db, work, secret, debug=True), work, "sales@example.com")
        _wait_until_up(server, url, log)
        crm = _set_up(url, jwt)
        yield crm
    finally:
        if crm is not None:
            crm.disconnect()
        _stop(server)
