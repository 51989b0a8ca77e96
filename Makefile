# leadscoring - the two commands: `make run` and `make test` (both create .venv first).
#
# Installs come from the lock file (uv.lock) through uv, which is bootstrapped into
# .cache/tools from the machine's own Python: nothing but Python 3.11 and make is needed.
# If uv cannot be installed, pip installs the same pins from requirements-lock.txt.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .cache/tools
UV := $(TOOLS)/bin/uv
UV_VERSION := 0.13.9
export MPLCONFIGDIR := $(CURDIR)/.cache/matplotlib
export IPYTHONDIR := $(CURDIR)/.cache/ipython
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
# Python keeps compiled modules (__pycache__ in .venv and the package): every notebook kernel,
# test subprocess and service worker then starts in about 2 s instead of 5 s. A shell that sets
# PYTHONDONTWRITEBYTECODE would otherwise make each of them compile pandas, scikit-learn and
# matplotlib again.
unexport PYTHONDONTWRITEBYTECODE

# What each command installs: run = core + serve; test = + dask + dev; lab = + lab.
RUN_EXTRAS := serve
TEST_EXTRAS := serve dask dev
LAB_EXTRAS := serve lab

.PHONY: help install install-test run run-quick events test test-fast lint format lock lab clean-results clean

help:
	@echo "make run       - create .venv, install, run the full production pipeline (10 notebooks)"
	@echo "make test      - create/update .venv, lint, run the whole test suite"
	@echo "make test-fast - the suite without the slow tests (papermill runs, cluster, S3 server)"
	@echo "make lab       - open JupyterLab on 03_Notebooks with the project's kernel"
	@echo "make lock      - refresh uv.lock and requirements-lock.txt after editing pyproject.toml"
	@echo "make events    - derive a GA4 event log from the export (DERIVED, not observed) for config_events.yaml"

# uv in a small tools venv; an empty marker file when uv cannot be had (pip fallback).
$(TOOLS)/.ready:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"'
	mkdir -p $(MPLCONFIGDIR) $(IPYTHONDIR)
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)" \
	  || echo "WARNING: uv could not be installed; falling back to pip with the pins of requirements-lock.txt"
	touch $@

# install_extras(stamp, extras): install the package with these extras from the lock, then register
# the notebooks' kernel. `uv sync --locked` refuses a pyproject.toml that changed without `make lock`.
define install_extras
	@if [ -x $(UV) ]; then \
	  $(UV) sync --locked --inexact $(foreach e,$(2),--extra $(e)) \
	    || { echo "ERROR: installing from uv.lock failed. If you edited pyproject.toml, run 'make lock' and commit uv.lock and requirements-lock.txt." >&2; exit 1; }; \
	else \
	  echo "Installing with pip (uv unavailable) from the pins of requirements-lock.txt"; \
	  test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	  $(BIN)/python -m pip install --quiet -c requirements-lock.txt -e ".[$(subst $(space),$(comma),$(strip $(2)))]"; \
	fi
	$(BIN)/python -m ipykernel install --sys-prefix --name leadscoring --display-name "Python (leadscoring)" >/dev/null
	touch $(1)
endef
comma := ,
space := $(subst ,, )

$(VENV)/.installed-run: pyproject.toml uv.lock requirements-lock.txt | $(TOOLS)/.ready
	$(call install_extras,$@,$(RUN_EXTRAS))

$(VENV)/.installed-test: pyproject.toml uv.lock requirements-lock.txt | $(TOOLS)/.ready
	$(call install_extras,$@,$(TEST_EXTRAS))
	touch $(VENV)/.installed-run

$(VENV)/.installed-lab: pyproject.toml uv.lock requirements-lock.txt | $(TOOLS)/.ready
	$(call install_extras,$@,$(LAB_EXTRAS))

# BottleCRM (django-crm), the real CRM the CRM tests run: a venv of its own in .cache/bottlecrm
# with a Python 3.12+ (found on PATH, in pyenv's versions or by uv), the pins of
# tools/bottlecrm-requirements.txt. Without such a Python: a note, and those tests skip.
BOTTLECRM_STAMP := .cache/bottlecrm/venv/.installed

$(BOTTLECRM_STAMP): tools/bottlecrm-requirements.txt | $(TOOLS)/.ready
	@$(PYTHON) tools/bottlecrm.py install

install: $(VENV)/.installed-run
install-test: $(VENV)/.installed-test $(BOTTLECRM_STAMP)

run: install
	$(BIN)/leadscoring run

run-quick: install
	$(BIN)/leadscoring run --quick

# A DERIVED GA4 event log (02_Datos/04_Eventos/) from the export's own columns, for the second
# configuration: then `.venv/bin/leadscoring --config 01_Documentos/config_events.yaml run`.
events: install
	$(BIN)/python tools/derive_events.py --config 01_Documentos/config_events.yaml

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@if [ -x $(UV) ]; then $(UV) export --frozen --no-hashes --no-emit-project --all-extras --quiet \
	  | diff -q - requirements-lock.txt >/dev/null \
	  || { echo "ERROR: requirements-lock.txt does not match uv.lock: run 'make lock'" >&2; exit 1; }; fi

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest

test-fast: lint
	$(BIN)/python -m pytest -m "not slow"

lock: $(TOOLS)/.ready
	$(UV) lock
	$(UV) export --frozen --no-hashes --no-emit-project --all-extras --quiet > requirements-lock.txt

lab: $(VENV)/.installed-lab
	cd 03_Notebooks && ../$(BIN)/jupyter lab

clean-results:
	rm -rf 05_Resultados/runs 05_Resultados/latest

clean:
	rm -rf $(VENV) .cache .pytest_cache
