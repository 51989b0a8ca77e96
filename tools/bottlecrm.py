"""BottleCRM, a real CRM for the test suite: install it, and keep a migrated database of it.

BottleCRM is the Python package ``django-crm`` (a Django REST API). Version 1.35 needs Python
3.12 or 3.13 (on 3.11 pip quietly installs the unrelated 0.9), so it gets a virtual environment
of its own, ``.cache/bottlecrm/venv``, apart from the project's 3.11 ``.venv``; the exact
packages are pinned in ``tools/bottlecrm-requirements.txt``. Standard library only: ``make
install-test`` runs ``python tools/bottlecrm.py install`` before anything else is there, and
``tests/bottlecrm.py`` imports this module.

- :func:`find_python`: ``$BOTTLECRM_PYTHON``, then ``python3.12`` / ``python3.13`` on PATH (each
  run once: a pyenv shim is on PATH even when its version is not selected, and then fails),
  then pyenv's versions folder, then ``uv python find``. None found: the BottleCRM tests skip
  with :data:`NO_PYTHON`.
- :func:`install`: that venv with the pinned packages (uv when the Makefile installed it,
  else pip); a stamp file holding the requirements' hash makes a second call a no-op.
- :func:`migrated_db`: ``django-admin migrate`` takes minutes (250 migrations), so its result
  is kept, ``.cache/bottlecrm/migrated-<key>.sqlite3`` (key: django-crm's version and the
  requirements' hash), and each test session copies it. :func:`start_migration` runs it in the background.

BottleCRM runs with ``tools/bottlecrm_site/bottlecrm_settings.py``: its own settings on SQLite,
Celery tasks run in the request, no Redis. Each ``django-admin`` gets a minimal environment
(:func:`django_env`): a developer's ``DBNAME``, ``CACHE_URL`` or ``.env`` file changes nothing.

    python tools/bottlecrm.py install   # the venv (no-op when installed; a note when no Python 3.12+)
    python tools/bottlecrm.py migrate   # the migrated database (no-op when kept)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "tools" / "bottlecrm-requirements.txt"
#: The folder put on BottleCRM's PYTHONPATH, holding its settings module.
SITE = ROOT / "tools" / "bottlecrm_site"
SETTINGS_MODULE = "bottlecrm_settings"
HOME = ROOT / ".cache" / "bottlecrm"
VENV = HOME / "venv"
STAMP = VENV / ".installed"
UV = ROOT / ".cache" / "tools" / "bin" / "uv"
#: The Python versions django-crm 1.35 declares.
PYTHONS = ((3, 12), (3, 13))
NO_PYTHON = (
    "BottleCRM (django-crm 1.35) needs Python 3.12 or 3.13 and none was found "
    "($BOTTLECRM_PYTHON, python3.12/python3.13 on PATH, pyenv's versions folder, `uv python find`)"
)
#: Environment variables a ``django-admin`` of BottleCRM inherits; the rest is set here.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
#: Seconds ``django-admin migrate`` may take (about 2 minutes on a busy machine).
MIGRATE_TIMEOUT = 900


def version() -> str:
    """The pinned django-crm version (from the requirements file)."""
    found = re.search(r"^django-crm==(\S+)", REQUIREMENTS.read_text(encoding="utf-8"), re.MULTILINE)
    if not found:
        raise RuntimeError(f"{REQUIREMENTS}: no django-crm==VERSION line")
    return found.group(1)


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


# -- the interpreter ----------------------------------------------------------------------------


def _probe(command: str) -> str | None:
    """The real executable behind ``command`` when it runs and is Python 3.12 or 3.13."""
    code = "import sys; print(sys.version_info[0], sys.version_info[1], sys.executable)"
    try:
        done = subprocess.run([command, "-c", code], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = done.stdout.split(maxsplit=2)
    if done.returncode != 0 or len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return parts[2].strip() if (int(parts[0]), int(parts[1])) in PYTHONS else None


def _pyenv_pythons() -> list[str]:
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found = []
    for folder in root.glob("3.*"):
        m = re.fullmatch(r"3\.(\d+)\.(\d+)", folder.name)
        exe = folder / "bin" / "python3"
        if m and (3, int(m.group(1))) in PYTHONS and exe.exists():
            found.append(((int(m.group(1)), int(m.group(2))), str(exe)))
    return [exe for _, exe in sorted(found)]


def _uv_python() -> list[str]:
    if not UV.exists():
        return []
    lo, hi = PYTHONS[0], PYTHONS[-1]
    request = f">={lo[0]}.{lo[1]},<{hi[0]}.{hi[1] + 1}"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    try:
        done = subprocess.run(
            [str(UV), "python", "find", request], capture_output=True, text=True, timeout=60, env=env, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [done.stdout.strip()] if done.returncode == 0 and done.stdout.strip() else []


def _candidates() -> Iterator[str]:
    if os.environ.get("BOTTLECRM_PYTHON"):
        yield os.environ["BOTTLECRM_PYTHON"]
    for major, minor in PYTHONS:
        on_path = shutil.which(f"python{major}.{minor}")
        if on_path:
            yield on_path
    yield from _pyenv_pythons()
    yield from _uv_python()


def find_python() -> str | None:
    """A Python 3.12 or 3.13 to run BottleCRM with (see the module), or None."""
    for candidate in _candidates():
        exe = _probe(candidate)
        if exe:
            return exe
    return None


# -- the virtual environment --------------------------------------------------------------------


def venv_bin(name: str) -> Path:
    """A program of BottleCRM's virtual environment."""
    return VENV / ("Scripts" if os.name == "nt" else "bin") / name


def installed() -> bool:
    """Whether the venv holds exactly the pinned packages (its stamp matches the requirements)."""
    try:
        return STAMP.read_text(encoding="utf-8").strip() == _digest(REQUIREMENTS) and venv_bin("django-admin").exists()
    except OSError:
        return False


def _run(args: Sequence[str | os.PathLike[str]], what: str) -> None:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"BottleCRM: {what} failed (exit {done.returncode}):\n{tail}")


def install(python: str | None = None) -> bool:
    """Install BottleCRM's venv unless it is installed; False (nothing done) when no Python
    3.12+ exists. A venv of another version is replaced."""
    if installed():
        return True
    python = python or find_python()
    if python is None:
        return False
    started = time.monotonic()
    if VENV.exists():
        shutil.rmtree(VENV)
    HOME.mkdir(parents=True, exist_ok=True)
    if UV.exists():
        os.environ["UV_PYTHON_DOWNLOADS"] = "never"
        _run([UV, "venv", "--quiet", "--python", python, VENV], "creating its venv")
        _run([UV, "pip", "install", "--quiet", "--python", venv_bin("python"), "-r", REQUIREMENTS], "installing django-crm")
    else:
        _run([python, "-m", "venv", VENV], "creating its venv")
        _run(
            [venv_bin("python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", REQUIREMENTS],
            "installing django-crm",
        )
    STAMP.write_text(_digest(REQUIREMENTS) + "\n", encoding="utf-8")
    print(f"BottleCRM: django-crm {version()} installed in {VENV} with {python} ({time.monotonic() - started:.0f} s)")
    return True


# -- running it ---------------------------------------------------------------------------------


def new_secret_key() -> str:
    """A signing key for one BottleCRM (HS256 JWTs need at least 32 bytes)."""
    return secrets.token_urlsafe(48)


def django_env(db: Path, workdir: Path, secret_key: str, *, debug: bool = False) -> dict[str, str]:
    """The whole environment of a ``django-admin`` of BottleCRM on SQLite file ``db``
    (uploads in ``workdir``); ``debug`` is needed by ``devlogin``."""
    env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
    env.update(
        PYTHONPATH=str(SITE),
        DJANGO_SETTINGS_MODULE=SETTINGS_MODULE,
        PYTHON_DOTENV_DISABLED="1",  # BottleCRM's settings would read a .env above its install
        ENV_TYPE="dev",
        DEBUG="True" if debug else "False",
        SECRET_KEY=secret_key,
        BOTTLECRM_DB=str(db),
        BOTTLECRM_MEDIA=str(workdir / "media"),
    )
    return env


def db_key() -> str:
    """What the migrated database depends on: django-crm's version and the pins (its
    migrations); the settings module says only where the database is."""
    return f"{version()}-{_digest(REQUIREMENTS)}"


def cached_db() -> Path:
    """Where the migrated database is kept."""
    return HOME / f"migrated-{db_key()}.sqlite3"


def migrated_db() -> Path:
    """The migrated database, migrating once (minutes) when it is not kept yet. The migration
    writes a temporary file renamed into place at the end: an interrupted one leaves nothing."""
    dest = cached_db()
    if dest.exists():
        return dest
    if not installed():
        raise RuntimeError(f"BottleCRM is not installed in {VENV}: run `make install-test`")
    HOME.mkdir(parents=True, exist_ok=True)
    for stale in HOME.glob("migrated-*.sqlite3"):  # another version's
        stale.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="migrate-", dir=HOME) as work:
        tmp = Path(work) / "db.sqlite3"
        started = time.monotonic()
        log = Path(work) / "migrate.log"
        with log.open("w", encoding="utf-8") as out:
            done = subprocess.run(
                [str(venv_bin("django-admin")), "migrate", "--noinput"],
                cwd=work,  # BottleCRM's logging writes server.log into the working folder
                env=django_env(tmp, Path(work), new_secret_key()),
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=MIGRATE_TIMEOUT,
                check=False,
            )
        if done.returncode != 0:
            tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
            raise RuntimeError(f"BottleCRM: django-admin migrate failed (exit {done.returncode}):\n{tail}")
        os.replace(tmp, dest)
    print(f"BottleCRM: migrated database kept in {dest} ({time.monotonic() - started:.0f} s)")
    return dest


def start_migration() -> subprocess.Popen[bytes]:
    """:func:`migrated_db` in a background process of its own, at a lower priority than the
    tests running meanwhile, in a new process group (stopping the group by its id stops its
    ``django-admin`` too); its output goes to ``.cache/bottlecrm/migrate.log``."""
    HOME.mkdir(parents=True, exist_ok=True)
    with (HOME / "migrate.log").open("wb") as out:
        return subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "migrate", "--nice"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("action", choices=["install", "migrate", "python"])
    parser.add_argument("--nice", action="store_true", help="run at a lower priority (a background migration)")
    args = parser.parse_args(argv)
    if args.nice and hasattr(os, "nice"):
        os.nice(10)
    try:
        if args.action == "python":
            python = find_python()
            print(python or NO_PYTHON)
            return 0 if python else 1
        if args.action == "install":
            if not install():
                print(f"NOTE: {NO_PYTHON}: the BottleCRM tests will skip")
            return 0
        # Stopped (the test session ended first): exit through the clean-ups, the temporary
        # database included.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        migrated_db()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
