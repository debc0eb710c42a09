# PT Pulse. Two commands set everything up on a fresh machine:
#   make demo   - venv + install, generate a demo practice, run the pipeline, serve the app on :8501
#   make test   - venv + install, run every test
# Each target creates or updates .venv itself.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PTPULSE := $(VENV)/bin/ptpulse
STAMP  := $(VENV)/.installed-stamp
export PTPULSE_HOME ?= $(CURDIR)/data
DEMO_DIR := $(PTPULSE_HOME)/incoming/demo_practice
PORT ?= 8501

.PHONY: venv demo test lint bench clean help

help:
	@echo "make demo   generate a demo practice, run the pipeline, serve the app on :$(PORT)"
	@echo "make test   run every test (unit, integration, dbt, app, browser)"
	@echo "make lint   ruff (lint + format), sqlfluff (dbt SQL), import-linter (the one-way layers)"
	@echo "make bench  medium-scale benchmarks -> bench/results/*.json"

# pip's own progress is left on (a first install takes minutes: the user should see it move)
$(STAMP): pyproject.toml
	@echo "==> Installing PT Pulse and its dependencies into $(VENV) (first time: a few minutes)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --progress-bar on --upgrade pip
	$(PY) -m pip install --progress-bar on -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	@echo "==> Generating a demo practice in $(DEMO_DIR)"
	$(PTPULSE) generate --scale small --seed 42 --out $(DEMO_DIR) --as-of $$(date -d yesterday +%F)
	@echo "==> Loading and building the dashboards (ingest, dbt build, ML scores; progress below)"
	PTPULSE_TRUTH_DIR=$(DEMO_DIR)/truth $(PTPULSE) refresh --wait 600
	$(PTPULSE) status
	@echo ""
	@echo "PT Pulse is starting on http://localhost:$(PORT)  (demo mode; Ctrl-C to stop)"
	$(PTPULSE) app --port $(PORT)

test: venv
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/sqlfluff lint dbt_project
	$(VENV)/bin/lint-imports --no-cache

bench: venv
	$(PY) bench/run_all.py

clean:
	rm -rf $(PTPULSE_HOME) bench/.cache
