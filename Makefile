# The two commands: `make demo` and `make test`. Both create .venv on first use.
# On demand: `make bench` (every client side by side, about 15 minutes, writes
# docs/benchmarks.md), `make fuzz` (atheris over every fuzz target, bounded in time and at
# least 100,000 inputs each) and `make soak` (the ten-minute chaos soak).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint types unit docs bench soak fuzz clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,docs]'
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

# The documentation site, into site/, with every warning an error (tests/test_site.py builds
# it inside `make test` too).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The side-by-side benchmarks (at most 15 minutes): writes docs/benchmarks.md and
# docs/img/bench-*.png. The two peers are installed in their own venvs under .bench/.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/side_by_side.py

# atheris is a separate extra: its wheels cover only some platforms and Pythons, and building
# it from source needs clang and libFuzzer. Without it, fuzz/run.py runs the hypothesis
# targets at a high example count instead.
fuzz: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[fuzz]' || echo "atheris could not be installed"
	$(BIN)/python -m fuzz.run

soak: $(STAMP)
	STX_SOAK=long $(BIN)/python -m pytest tests/soak -q -s -p no:cacheprovider

clean:
	rm -rf $(VENV) site .bench .mypy_cache .pytest_cache .ruff_cache .coverage .fuzz
