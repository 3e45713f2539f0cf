# The tooling contract: every command a developer or CI runs goes through here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install install-browser format lint mypy test demo bench bench-emulator bench-ratelimit bench-intake bench-sweep clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The dashboard's browser test drives Debian's chromium through Playwright (never `playwright
# install`: browser downloads are not available here).
install-browser:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

mypy: $(STAMP)
	$(BIN)/mypy

test: lint mypy install-browser
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/python -m devenv.demo

bench-emulator: $(STAMP)
	$(BIN)/python bench/emulator.py

bench-intake: $(STAMP)
	$(BIN)/python bench/intake.py

bench-ratelimit: $(STAMP)
	$(BIN)/python bench/ratelimit.py

bench-sweep: $(STAMP)
	$(BIN)/python bench/sweep.py

bench: bench-emulator bench-intake bench-ratelimit bench-sweep

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
