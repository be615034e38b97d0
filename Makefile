# The two commands a new user needs: `make demo` and `make test`.
# Each one sets itself up on a fresh machine (virtualenv in .venv, install).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-fleet demo-local test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: a coordinator and a runner on this machine run the example service's pipeline
## (scripts/demo.sh); `make demo-local` runs it with `conveyor run`, no server.
demo: $(STAMP)
	scripts/demo.sh

## demo-fleet (as root): four hosts as network namespaces, an agent on each, the example
## service spread over them, a host cut off in the middle of a canary (scripts/demo-fleet.sh).
demo-fleet: $(STAMP)
	scripts/demo-fleet.sh

# The example's jobs use python, pytest and coverage from .venv, as a runner machine
# would have them installed.
demo-local: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/conveyor run examples/payments-api/conveyor.yml \
		--ref refs/heads/main --parallel 2 --report .conveyor/demo-report.json

## test: ruff, mypy strict, import-linter, then pytest with coverage (fails under 90 %).
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples scripts
	$(BIN)/ruff format --check src tests bench examples scripts
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest --cov --cov-report=term $(PYTEST_ARGS)

## bench: the benchmarks; each prints JSON.
bench: $(STAMP)
	$(BIN)/python bench/compile_pipeline.py
	$(BIN)/python bench/executor_overhead.py
	$(BIN)/python bench/junit_parse.py

clean:
	rm -rf $(VENV) .conveyor .pytest_cache .mypy_cache .ruff_cache .coverage
