# The tooling contract: every command a developer or CI runs goes through here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install format lint mypy test demo bench bench-emulator bench-ratelimit clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

mypy: $(STAMP)
	$(BIN)/mypy

test: lint mypy
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/python -m devenv.demo

bench-emulator: $(STAMP)
	$(BIN)/python bench/emulator.py

bench: bench-emulator

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
