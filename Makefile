# Two commands for a fresh machine: `make demo` and `make test`. Each builds .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch comes first, pinned, so pip never resolves a multi-GB CUDA build for it.
TORCH := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test lint format venv clean

demo: $(STAMP)
	$(VENV)/bin/mlbert demo

# The habits that keep the code in shape run before the tests, so CI checks them too.
test: lint
	$(PY) -m pytest

# ruff: lint rules and formatting (pyproject.toml, [tool.ruff]); import-linter: no import cycles and
# no module importing a layer above it ([tool.importlinter]).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# Rewrite the files the way `make lint` wants them (formatting and the fixable lint findings).
format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) runs .pytest_cache
