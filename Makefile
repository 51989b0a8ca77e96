# leadscoring - the two commands: `make run` and `make test` (both create .venv first).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export MPLCONFIGDIR := $(CURDIR)/.cache/matplotlib
export IPYTHONDIR := $(CURDIR)/.cache/ipython

.PHONY: help install run run-quick events test lab clean-results clean

help:
	@echo "make run    - create .venv, install, run the full production pipeline (10 notebooks)"
	@echo "make test   - create/update .venv, run the whole test suite"
	@echo "make lab    - open JupyterLab on 03_Notebooks with the project's kernel"
	@echo "make events - derive a GA4 event log from the export (DERIVED, not observed) for config_events.yaml"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"' 
	mkdir -p $(MPLCONFIGDIR) $(IPYTHONDIR)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,serve,dask]"
	$(BIN)/python -m ipykernel install --sys-prefix --name leadscoring --display-name "Python (leadscoring)" >/dev/null
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/leadscoring run

run-quick: install
	$(BIN)/leadscoring run --quick

# A DERIVED GA4 event log (02_Datos/04_Eventos/) from the export's own columns, for the second
# configuration: then `.venv/bin/leadscoring --config 01_Documentos/config_events.yaml run`.
events: install
	$(BIN)/python -m leadscoring.events.derive --config 01_Documentos/config_events.yaml

test: install
	$(BIN)/python -m pytest

lab: install
	$(BIN)/python -m pip install --quiet -e ".[lab]"
	cd 03_Notebooks && ../$(BIN)/jupyter lab

clean-results:
	rm -rf 05_Resultados/runs 05_Resultados/latest

clean:
	rm -rf $(VENV) .cache .pytest_cache
