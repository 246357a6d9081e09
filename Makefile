# binds-pipelines. Needs only Python 3.11+ and make: every target creates .venv if missing
# and installs the locked set (uv.lock) with all extras.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP  := $(VENV)/.installed
# numba (scanpy's neighbors/UMAP) compiles once, ~110 s; keep its cache with the project
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export MPLBACKEND ?= Agg
export PREFECT_HOME ?= $(CURDIR)/.cache/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

.PHONY: install bytecode test test-fast demo bench lint format clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(STAMP): pyproject.toml uv.lock | $(BIN)/uv
	@mkdir -p $(PREFECT_HOME) $(NUMBA_CACHE_DIR)
	# --frozen: install exactly the lock; --inexact: keep pip and uv in the venv;
	# --compile-bytecode: what pip does by default (~25 s once); without it every process
	# compiles what it imports (numpy + pandas + pyarrow: 2.4 s -> 0.6 s per process here)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --frozen --all-extras --inexact --compile-bytecode --python $(BIN)/python
	$(MAKE) --no-print-directory bytecode
	@touch $(STAMP)

# the project itself is installed editable, so uv compiles none of it; with
# PYTHONDONTWRITEBYTECODE set (CI images, containers) every binds process and every Snakemake
# job would compile pipelines/ again (0.15 s per `binds` start here). Stale files are ignored.
bytecode:
	@$(BIN)/python -m compileall -q -j 0 pipelines snakemake_logger_plugin_binds benchmarks

install: $(STAMP)  ## create .venv and install the project with its extras

SLURM_UP := ../shared/tools/slurm/ci_slurm_up.sh
# pytest-xdist workers of `make test`: the tests that share a session build (demo store, real
# stores, ...) run in one worker (their xdist_group, set by tests/conftest.py), the rest spread
TEST_WORKERS ?= 2
# the fast tier's tests wait often (loopback S3 and HTTP round trips, subprocesses): one worker
# more than the cores fills those waits (2 cores: 148 s with 3 workers, 170 s with 2, 158 s with 4)
FAST_WORKERS ?= 3

test: install  ## run the whole test suite (what CI runs); under CI as root it first starts a single-node Slurm with accounting
	@# WITH_DBD=1: slurmdbd + MariaDB, so that sacct answers (the usage record's Slurm figures)
	@if [ -n "$$CI" ] && [ "$$(id -u)" = 0 ] && [ -f $(SLURM_UP) ]; then \
		echo "starting a single-node Slurm with accounting for the profile tests ($(SLURM_UP))"; \
		WITH_DBD=1 bash $(SLURM_UP) >/dev/null; fi
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

test-fast: install  ## the inner loop: no Snakemake, no Prefect server, no Slurm, no browser (markers: tests/conftest.py)
	$(BIN)/python -m pytest -m "not slow" -q -n $(FAST_WORKERS)

lint: install  ## ruff (lint + format check) and mypy on the core modules; what CI runs first
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: install  ## generate example runs for every modality, process and publish them to ./demo-store, print the catalog
	$(BIN)/binds demo --store ./demo-store

bench: install bytecode  ## benchmarks: ratios against the baselines named in the issues (figures in benchmarks/README.md)
	$(BIN)/python benchmarks/run.py

lock:  ## re-resolve uv.lock after changing pyproject.toml
	$(BIN)/uv lock

clean:  ## remove demo outputs and caches (keeps .venv)
	rm -rf demo-store demo-runs .binds-work .pytest_cache
