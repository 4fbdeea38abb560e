# The two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint types unit bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/stx-ws demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

# The whole suite with the coverage gate, then the core and driver suites again on the
# websockets engine (no coverage there: the first run covers both engines' code already).
unit: $(STAMP)
	$(BIN)/python -m pytest --cov --cov-report=term-missing
	$(BIN)/python -m pytest tests/core tests/drivers --ws-engine=websockets

test: lint types unit

bench: $(STAMP)
	$(BIN)/python benchmarks/core_throughput.py
	$(BIN)/python benchmarks/engine_parse.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .coverage
