# One command per job, the same for developers and CI. Each target sets up
# what it needs on a fresh machine: a .venv from $(PYTHON) (3.11 or later) and
# the project installed editable with its test tools, reinstalled only when the
# packaging files change.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint types fmt bench bench-quick bench-tools clean chromium screenshots

demo: $(STAMP)
	$(BIN)/livesupport demo

test: lint types chromium
	$(BIN)/python -m pytest

# Debian's Chromium for the browser tests (tests/browser), installed when missing
# and when we are root; elsewhere those tests skip with a reason (fail under CI=true).
chromium:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

# Regenerates docs/screenshots/*.png from a real server and browser.
screenshots: $(STAMP) chromium
	$(BIN)/python -m tests.browser.screenshots

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The benchmark against python-socketio and nchan (README, "Performance"): about
# 20 minutes; bench-quick about one. Uses Debian's wrk, nginx and libnginx-mod-nchan
# (installed here when missing and we are root; elsewhere those parts are skipped)
# and PostgreSQL and Redis on loopback (their runs are skipped without them).
BENCH_STAMP := $(VENV)/.bench-installed

bench: $(BENCH_STAMP) bench-tools
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

bench-quick: $(BENCH_STAMP) bench-tools
	$(BIN)/python -m benchmarks --quick $(BENCH_ARGS)

bench-tools:
	@if [ "$$(id -u)" = 0 ] && { ! command -v wrk >/dev/null || \
		[ ! -e /usr/lib/nginx/modules/ngx_nchan_module.so ]; }; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq wrk nginx-light libnginx-mod-nchan >/dev/null; \
	fi

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml setup.cfg | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache $(STAMP)
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
