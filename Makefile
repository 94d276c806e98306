# Every target installs what it needs first: `make demo` and `make test` work
# as the first command on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PY_SOURCES := service tests openrpc/sdk
# @open-rpc/test-coverage and @open-rpc/schema-utils-js, run by the tests (needs node and npm)
NODE_STAMP := openrpc/node_modules/.installed
MUTATE_STAMP := $(VENV)/.installed-mutate
# `make mutate MODULE=auth` runs one module of [tool.hero_codescalers.mutate.modules]
MODULE ?=
# npm keeps its cache in $HOME; a user whose home is not writable (a service account,
# nobody) gets one inside .venv instead.
NPM_CACHE := $(if $(shell [ -w "$$HOME" ] && echo yes),,--cache $(CURDIR)/$(VENV)/npm-cache)

.PHONY: install test lint format demo openrpc sdk openrpc-coverage soak soak-flood bench bench-rpc mutate clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

$(MUTATE_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,dev,mutate]'
	touch $(MUTATE_STAMP)

$(NODE_STAMP): openrpc/package.json openrpc/package-lock.json
	cd openrpc && npm ci --no-audit --no-fund --loglevel=error $(NPM_CACHE)
	touch $(NODE_STAMP)

test: lint $(NODE_STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m tests.bench.cleanup_bench $(BENCH_ARGS)

bench-rpc: $(STAMP)
	$(BIN)/python -m tests.bench.rpc_bench $(BENCH_ARGS)

soak: $(STAMP)
	$(BIN)/python -m tests.soak.soak $(SOAK_ARGS)

# An admin's system.health while one peer holds 2,000 idle connections and floods batches.
soak-flood: $(STAMP)
	$(BIN)/python -m tests.soak.flood $(SOAK_ARGS)

# Mutation testing (mutmut), not part of `make test`: see tests/mutate.py.
mutate: $(MUTATE_STAMP)
	$(BIN)/python -m tests.mutate $(MODULE)

openrpc-coverage: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m tests.conformance.coverage_harness

lint: $(STAMP)
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

format: $(STAMP)
	$(BIN)/ruff format $(PY_SOURCES)
	$(BIN)/ruff check --fix $(PY_SOURCES)

openrpc: $(STAMP)
	$(BIN)/python -m hero_codescalers.openrpc > openrpc/openrpc.json

sdk: openrpc
	$(BIN)/python openrpc/sdk/generate.py

demo: $(STAMP)
	BIN=$(BIN) bash deploy/demo.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache openrpc/node_modules .mutate mutants
