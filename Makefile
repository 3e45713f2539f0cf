# The tooling contract: every command a developer or CI runs goes through here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_LOCK := requirements/dev.txt
TOOLS := .tools
# The oldest Python the project runs on: requires-python in pyproject.toml (a test keeps them equal).
MIN_PYTHON := 3.11

.PHONY: install lock lock-upgrade lock-check install-browser install-promtool format lint mypy test demo bench bench-emulator bench-ratelimit bench-intake bench-sweep bench-memory bench-failover chaos chaos-short clean

# The virtualenv is exactly the dev lock (rebuilt whenever the lock changes), then the project
# itself with --no-deps: nothing is resolved at install time. No network beyond the index, no root.
$(STAMP): $(DEV_LOCK) pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < tuple(map(int, "$(MIN_PYTHON)".split("."))))' || { \
	  echo "$(PYTHON) is $$($(PYTHON) -V 2>&1); fc-disconnect needs Python $(MIN_PYTHON) or newer"; \
	  echo "(requires-python in pyproject.toml): make install PYTHON=/path/to/python3.11"; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# Rewrite requirements/*.txt from pyproject.toml (see devenv/locks.py): deterministic, a few
# seconds, falls back to uv's cache when the index is unreachable. After a merge that touched
# pyproject.toml: take either side of any conflict in requirements/, then run this.
# Needs only uv from the virtualenv, so an out-of-date venv is not rebuilt first.
lock: | $(BIN)/uv
	$(BIN)/python -m devenv.locks

# The same, preferring the newest releases up to [tool.fc-disconnect.lock].exclude-newer.
lock-upgrade: | $(BIN)/uv
	$(BIN)/python -m devenv.locks --upgrade

$(BIN)/uv:
	$(MAKE) install

lock-check: $(STAMP)
	$(BIN)/python -m devenv.locks --check

# The dashboard's browser test drives a Chromium already on the machine through Playwright
# (never `playwright install`: browser downloads are not available here). Needs root (apt-get);
# `make test` never runs it. Elsewhere: any Chromium on PATH, or FCD_CHROMIUM=/path/to/chrome.
install-browser:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)

# promtool (Debian's prometheus package, unpacked into .tools/: no root, no service started) for
# the alert-rule tests; without it they validate the rules against their schema instead.
install-promtool:
	test -x $(TOOLS)/prometheus/usr/bin/promtool || ( \
	  mkdir -p $(TOOLS)/deb && cd $(TOOLS)/deb && \
	  (apt-get download prometheus || (apt-get update && apt-get download prometheus)) && \
	  dpkg-deb -x prometheus_*.deb ../prometheus && rm -f prometheus_*.deb )

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

mypy: $(STAMP)
	$(BIN)/mypy

test: lint mypy
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

bench-memory: $(STAMP)
	$(BIN)/python bench/ledger_memory.py

# Every fault at once (worker SIGKILL/SIGTERM, Redis restart and kill -9, Stripe 500s, hangs,
# 429s, refused connections), then one table of invariants; exits 1 if one broke. ~10 min;
# chaos-short is the < 1 min variant `make test` runs (tests/chaos).
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py

chaos-short: $(STAMP)
	$(BIN)/python bench/chaos.py --short

bench-failover: $(STAMP)
	$(BIN)/python bench/failover.py

bench: bench-emulator bench-intake bench-ratelimit bench-sweep bench-memory bench-failover

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
