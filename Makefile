# labkeeper: `make run` serves the lab on http://127.0.0.1:8000, `make test` runs the suite.
# Both set up everything they need first (virtualenv, dependencies, assets, database).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export LABKEEPER_DATABASE_URL ?= sqlite:///var/labkeeper.db

.PHONY: run test lint format setup assets db chromium services bench clean

setup: $(STAMP) assets

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Front-end libraries come from the npm registry at build time and are never committed.
assets: $(STAMP)
	@if [ -f package.json ]; then \
	  if [ ! -d node_modules ] || [ package.json -nt node_modules ]; then npm install --no-audit --no-fund --silent && touch node_modules; fi; \
	  $(BIN)/python -m labkeeper.web.assets; \
	fi

db: setup
	$(BIN)/labkeeper db upgrade

# The demo (simulated devices and switch, and the demo lab in an empty database) is on unless
# LABKEEPER_DEMO=0.
run: setup db
	LABKEEPER_DEMO=$${LABKEEPER_DEMO:-1} $(BIN)/labkeeper serve --host 127.0.0.1 --port 8000

# Debian's Chromium drives the browser tests (browser downloads do not work here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Start PostgreSQL, MariaDB and Redis on this machine when they are installed but down.
services:
	@bash scripts/start-services.sh

test: setup chromium services
	$(BIN)/python -m pytest -n auto --dist loadgroup -q $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests bench migrations
	$(BIN)/ruff format --check src tests bench migrations
	$(BIN)/mypy

format: setup
	$(BIN)/ruff check --fix src tests bench migrations
	$(BIN)/ruff format src tests bench migrations

bench: setup
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } || true
	for b in bench/[a-z]*.py; do echo "== $$b"; $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) node_modules var .pytest_cache .mypy_cache .ruff_cache
