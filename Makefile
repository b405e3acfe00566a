# `make run` serves on http://127.0.0.1:8000; `make test` runs every gate and the suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint imports typecheck bench clean

$(STAMP): pyproject.toml requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tokensmith serve --host 127.0.0.1 --port 8000

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks migrations examples
	$(BIN)/ruff format --check src tests benchmarks migrations examples

# The import rules of ARCHITECTURE.md, as contracts in pyproject.toml [tool.importlinter].
imports: $(STAMP)
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

# Branch coverage of tokensmith over the whole suite ([tool.coverage] in pyproject.toml);
# the floor is the level measured in CI when it was set (93.28%, PostgreSQL and SoftHSM2 on), less a point for timing-dependent branches: raise it, never lower.
COVERAGE_FLOOR := 92

test: $(STAMP) lint imports typecheck
	$(BIN)/pytest -p no:cacheprovider --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_tokens.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache .coverage
