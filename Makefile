# Every target installs what it needs first: `make demo` and `make test` work
# as the first command on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PY_SOURCES := service tests openrpc/sdk

.PHONY: install test lint format demo openrpc sdk clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

test: lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/mypy

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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
