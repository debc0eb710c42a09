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

.PHONY: venv demo test test-spark lint bench bench-large clean help

help:
	@echo "make demo   generate a demo practice, run the pipeline, serve the app on :$(PORT)"
	@echo "make test   run every test (unit, integration, dbt, app, browser)"
	@echo "make lint   ruff (lint + format), sqlfluff (dbt SQL), import-linter (the one-way layers)"
	@echo "make bench  medium-scale benchmarks -> bench/results/*.json"
	@echo "make bench-peers  our models vs LightGBM, statsforecast, ... (installs the peers extra) -> ml-peers-medium.json"
	@echo "make bench-large  the pipeline at chain scale (900 clinics; CLINICS=200 quicker) -> large.json"
	@echo "make test-spark  the dbt models on Apache Spark, compared with DuckDB (installs pyspark; needs Java)"

# pip's own progress is left on (a first install takes minutes: the user should see it move)
$(STAMP): pyproject.toml
	@echo "==> Installing PT Pulse and its dependencies into $(VENV) (first time: a few minutes)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --progress-bar on --upgrade pip
	$(PY) -m pip install --progress-bar on -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# The practice is generated once per home: regenerated on a later day, the same ids would come back with another
# history and the build would refuse it. `make clean` (removes $(PTPULSE_HOME)) for a new one.
demo: venv
	@if [ -f $(DEMO_DIR)/truth/manifest.json ]; then \
		echo "==> Reusing the demo practice in $(DEMO_DIR) (make clean, then make demo, for a new one)"; \
	else \
		echo "==> Generating a demo practice in $(DEMO_DIR)"; \
		$(PTPULSE) generate --scale small --seed 42 --out $(DEMO_DIR) --as-of $$(date -d yesterday +%F); \
	fi
	@echo "==> Loading and building the dashboards (ingest, dbt build, ML scores; progress below)"
	PTPULSE_TRUTH_DIR=$(DEMO_DIR)/truth $(PTPULSE) refresh --wait 600
	$(PTPULSE) status
	@echo ""
	@echo "PT Pulse is starting on http://localhost:$(PORT)  (demo mode; Ctrl-C to stop)"
	$(PTPULSE) app --port $(PORT)

# Three pytest-xdist workers on a 2-core box (TEST_WORKERS=0: one process, as `pytest -p no:xdist`): with two, the
# suite used 68% of the two cores (33.4 CPU-min in 24.7 min of wall, session 14), its tests waiting on browsers,
# servers, subprocess builds and the shared session builds; a third keeps the cores busy. --dist loadfile
# keeps each test file on one worker, so its module fixtures are built once; the session builds are shared by
# the workers (tests/conftest.py shared_dir), whose file order (no reorder by size) starts them on different work.
TEST_WORKERS ?= 3
test: venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=30 -m "not spark"

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/sqlfluff lint dbt_project --processes 0  # every core: ~44 s serially, ~22 s on two
	$(VENV)/bin/lint-imports --no-cache

# The dbt models on Apache Spark vs DuckDB (issue 15): installs the optional `spark` extra (pyspark, dbt-spark;
# needs Java 17+, Debian: apt-get install -y openjdk-17-jre-headless). `make test` runs it too once installed.
test-spark: venv
	$(PY) -m pip install --progress-bar on -e '.[dev,spark]'
	$(PY) -m pytest tests/spark -q -m spark

bench: venv
	$(PY) bench/run_all.py

# The whole pipeline at chain scale (issue 15; not in CI, not in `make bench`): generate -> ingest -> build ->
# train -> score -> pages at 900 clinics, each step's wall, CPU and peak RSS -> bench/results/large.json.
# Hours and ~80 GB of disk; CLINICS=200 makes a quicker run (bench/results/large-200.json).
CLINICS ?= 900
bench-large: venv
	$(PY) bench/bench_large.py --clinics $(CLINICS)

# Our models vs the peers a practitioner would pick (issue 12): installs the optional `peers` extra
# (statsforecast; lightgbm is a product dependency), then one run -> bench/results/ml-peers-medium.json. `make bench` does not need the extra.
.PHONY: bench-peers
bench-peers: venv
	$(PY) -m pip install --progress-bar on -e '.[dev,peers]'
	$(PY) bench/bench_ml_peers.py

clean:
	rm -rf $(PTPULSE_HOME) bench/.cache
