# graphwire: `make run` serves the demo, `make test` runs the whole suite.
# Both share `make setup`, which creates .venv and installs the project once, and again only
# when pyproject.toml changes; and installs the browser client's npm packages (three.js, and
# eslint for `make lint`) with `npm ci`, again only when package-lock.json changes.
PY ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
WEB := src/graphwire/web
NODE_STAMP := $(WEB)/node_modules/.installed

.PHONY: setup run test test-js test-py test-gateway lint bench screenshot clean

setup: $(STAMP) $(NODE_STAMP)

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

$(NODE_STAMP): $(WEB)/package-lock.json $(WEB)/package.json
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

run: setup
	$(VENV)/bin/graphwire serve

# JavaScript unit tests (Node's runner), then the Python suite (browser tests included), on
# one pytest worker a core (pytest-xdist; at most four: each starts servers and browsers).
# TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= auto
PYTEST := $(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --maxprocesses 4
test: setup test-js test-py

test-js: $(NODE_STAMP)
	cd $(WEB) && node --test test/*.test.js

test-py: setup
	$(PYTEST)

# The server, client and browser tests again, each server a simulation and a gateway on a real
# redis-server: clients cannot tell a gateway from a single process (docs/deploy.md; not part
# of `make test`, which runs tests/cluster against real processes: it adds four minutes). In
# one process: each test's simulation and gateway share it, and two such tests at once on two
# cores starve the 100,000-node one's lease renewals (its simulation lost the lease).
test-gateway: setup
	GRAPHWIRE_TEST_THROUGH_GATEWAY=1 $(VENV)/bin/python -m pytest -q tests/server tests/client tests/web

lint: setup
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/mypy src
	cd $(WEB) && node_modules/.bin/eslint .

screenshot: setup
	$(VENV)/bin/python scripts/screenshot.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache $(WEB)/node_modules
