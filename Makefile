# The two commands of the README: `make demo` and `make test`. Both install everything first.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
UV_VERSION := 0.13.8
VENV := .venv
BIN := $(VENV)/bin
export MESH_HOME ?= $(CURDIR)/.mesh

.PHONY: install demo test test-unit bench ui clean

install:
	@$(UV) --version >/dev/null 2>&1 || { echo "installing uv $(UV_VERSION) from PyPI"; $(PYTHON) -m pip install -q "uv==$(UV_VERSION)"; }
	@echo "syncing the virtual environment from uv.lock (bytecode precompiled: imports are 2x faster)"
	$(UV) sync --frozen --compile-bytecode
	$(BIN)/mesh dbt prepare

demo: install
	$(BIN)/mesh demo

test: install
	$(BIN)/mesh lint
	$(BIN)/pytest -q tests

test-unit: install
	$(BIN)/pytest -q tests/unit

# Benchmarks (never timed assertions in tests): BENCH_ROWS=20000000 BENCH_REPEATS=3 by default.
bench: install
	$(BIN)/python bench/run.py

ui:
	DAGSTER_HOME=$(MESH_HOME)/dagster $(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf $(MESH_HOME) dbt_project/target
