# PT Pulse. Two commands set everything up on a fresh machine:
#   make demo   - venv + install, generate a demo practice, run the pipeline, serve the app on :8501
#   make test   - venv + install, run every test
# Each target creates or updates .venv itself.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PTPULSE := $(VENV)/bin/ptpulse
STAMP  := $(VENV)/.installed-stamp
# The demo's own home. `make demo` and `make clean` act on it and on nothing else: never on a PTPULSE_HOME the shell
# exports (a practice's real home: its append-only store, secrets/pseudonym.key, app.sqlite with the audit log and
# consent). `:=` ignores a DEMO_HOME in the environment; `make demo DEMO_HOME=/path` on the command line is the
# only way to move it, and `make clean` still deletes it only if it is a demo home (DEMO_MARK below).
DEMO_HOME := $(CURDIR)/data
# The PTPULSE_HOME the user gave (shell or command line), named in the messages of demo and clean; FORCE=1 for
# clean counts only when typed on the command line, never inherited from the environment.
SHELL_PTPULSE_HOME := $(if $(filter environment command,$(firstword $(origin PTPULSE_HOME))),$(PTPULSE_HOME))
CLEAN_FORCE := $(if $(filter command,$(firstword $(origin FORCE))),$(FORCE))
CLEAN_AT = $(if $(filter command,$(firstword $(origin DEMO_HOME))), DEMO_HOME=$(DEMO_HOME))
DEMO_DIR   = $(DEMO_HOME)/incoming/demo_practice
DEMO_MARK  = $(DEMO_DIR)/truth/manifest.json
# Other targets (test, bench) keep the home they always had: the shell's PTPULSE_HOME, else data/.
export PTPULSE_HOME ?= $(DEMO_HOME)
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
	@echo "make clean  delete the demo home ($(DEMO_HOME)) and bench/.cache; never a practice's own PTPULSE_HOME"

# pip's own progress is left on (a first install takes minutes: the user should see it move)
$(STAMP): pyproject.toml
	@echo "==> Installing PT Pulse and its dependencies into $(VENV) (first time: a few minutes)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --progress-bar on --upgrade pip
	$(PY) -m pip install --progress-bar on -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# The practice is generated once per home: regenerated on a later day, the same ids would come back with another
# history and the build would refuse it. `make clean` (removes the demo home) for a new one.
# Every command below runs on DEMO_HOME whatever PTPULSE_HOME the shell exports or the command line gives
# (`override export`). A DEMO_HOME that already holds a store but no demo practice is somebody's data:
# refused. "Yesterday" comes from the venv's Python (GNU `date -d` does not exist on macOS).
demo: override export PTPULSE_HOME := $(DEMO_HOME)
demo: venv
	@if [ -n "$(SHELL_PTPULSE_HOME)" ] && [ "$(SHELL_PTPULSE_HOME)" != "$(DEMO_HOME)" ]; then \
		echo "==> Your shell's PTPULSE_HOME ($(SHELL_PTPULSE_HOME)) is left alone: the demo lives in $(DEMO_HOME)"; \
	fi
	@if [ ! -f "$(DEMO_MARK)" ] && { [ -e "$(DEMO_HOME)/raw.duckdb" ] || [ -e "$(DEMO_HOME)/app.sqlite" ]; }; then \
		echo "make demo: $(DEMO_HOME) holds a PT Pulse store that is not the demo's (no $(DEMO_MARK))." >&2; \
		echo "  Nothing was written. Move that folder, or run make demo DEMO_HOME=/some/empty/folder." >&2; \
		exit 1; \
	fi
	@if [ -f "$(DEMO_MARK)" ]; then \
		echo "==> Reusing the demo practice in $(DEMO_DIR) (make clean, then make demo, for a new one)"; \
	else \
		yesterday=$$($(PY) -c "import datetime; print(datetime.date.today() - datetime.timedelta(days=1))") \
			|| { echo "make demo: could not compute yesterday's date with $(PY)" >&2; exit 1; }; \
		echo "==> Generating a demo practice in $(DEMO_DIR) (history up to $$yesterday)"; \
		$(PTPULSE) generate --scale small --seed 42 --out "$(DEMO_DIR)" --as-of "$$yesterday"; \
	fi
	@echo "==> Loading and building the dashboards (ingest, dbt build, ML scores; progress below)"
	PTPULSE_TRUTH_DIR="$(DEMO_DIR)/truth" $(PTPULSE) refresh --wait 600
	$(PTPULSE) status
	@echo ""
	@echo "Run ptpulse yourself on this demo (in another terminal, from $(CURDIR)):"
	@echo "    source .venv/bin/activate && export PTPULSE_HOME=$(DEMO_HOME) && ptpulse status"
	@echo "Your own practice's data goes in another, empty home (README: Your own data)."
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
# needs Java 17+, Debian: apt-get install -y openjdk-17-jre-headless). `make test` never runs it (-m "not spark"),
# installed or not: only `make test-spark` (or `pytest tests/spark -m spark`) does.
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

# Deletes the demo home only: DEMO_HOME, never the shell's PTPULSE_HOME (a practice's real home). A non-empty folder
# without the demo practice's manifest (DEMO_MARK) is refused: it may be a practice's data kept in data/ (ptpulse's
# default home). `make clean FORCE=1` deletes it anyway (FORCE counts on the command line only, never from the env).
clean:
	@if [ -n "$(SHELL_PTPULSE_HOME)" ] && [ "$(SHELL_PTPULSE_HOME)" != "$(DEMO_HOME)" ]; then \
		echo "==> Your shell's PTPULSE_HOME ($(SHELL_PTPULSE_HOME)) is left alone: make clean removes only the demo home"; \
	fi
	@case "$(DEMO_HOME)" in ""|/) echo "make clean: refusing DEMO_HOME='$(DEMO_HOME)'" >&2; exit 1;; esac
	@if [ -n "$$(ls -A "$(DEMO_HOME)" 2>/dev/null)" ] && [ ! -f "$(DEMO_MARK)" ] && [ "$(CLEAN_FORCE)" != 1 ]; then \
		echo "make clean: refusing to delete $(DEMO_HOME): it is not a demo home (no $(DEMO_MARK))." >&2; \
		echo "  It may hold a practice's own data (store, secrets/pseudonym.key, app.sqlite with the audit log)." >&2; \
		echo "  Nothing was deleted. If it really is disposable: make clean FORCE=1$(CLEAN_AT)" >&2; \
		exit 1; \
	fi
	rm -rf "$(DEMO_HOME)" bench/.cache
