# The two commands: `make run` (server + UI on :8000) and `make test` (everything CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test venv ui lint typecheck pytest test-unpatched test-lowest conformance conformance-deflate test-frontend test-browser system-deps screenshot bench dist clean

run: venv ui
	$(BIN)/trio-broadcast serve --host $(HOST) --port $(PORT)

test: venv ui system-deps lint typecheck pytest test-unpatched test-lowest conformance test-frontend test-browser

$(BIN)/activate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/activate

venv: $(BIN)/activate

frontend/node_modules/.package-lock.json: frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund
	touch $@

ui: frontend/node_modules/.package-lock.json
	cd frontend && npm run build

system-deps:
	bash scripts/system-deps.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/pytest

# The integration and fault tests again on Hypercorn's own send path: the shortcuts of
# trio_broadcast/server/_hypercorn.py off, as with a Hypercorn or wsproto they do not know.
test-unpatched: venv
	TRIO_BROADCAST_SHORTCUTS=off $(BIN)/pytest -q -p no:cacheprovider tests/integration tests/faults

# The integration tests on the lowest dependency versions pyproject.toml allows, in a venv of its
# own (rebuilt only when the bounds change; the dev tools there are the newest).
LOWEST ?= $(VENV)/lowest
$(LOWEST)/installed: pyproject.toml .ci/lowest_requirements.py
	rm -rf $(LOWEST)
	$(PYTHON) -m venv $(LOWEST)
	$(PYTHON) .ci/lowest_requirements.py > $(LOWEST)/lowest.txt
	$(LOWEST)/bin/pip install --quiet -r $(LOWEST)/lowest.txt pytest pytest-trio httpx hypothesis jsonschema
	$(LOWEST)/bin/pip install --quiet --no-deps -e .
	touch $@

test-lowest: $(LOWEST)/installed
	$(LOWEST)/bin/pip freeze | grep -iE '^(trio|trio-websocket|hypercorn|quart|quart-trio|attrs|structlog|prometheus.client|coredis)=='
	$(LOWEST)/bin/pytest -q -p no:cacheprovider tests/integration

# Autobahn|Testsuite's fuzzing client (a Python 2.7 program, in a virtualenv of its own) against
# an echo endpoint on the server's own stack (tests/conformance; docs/deployment.md).
PY27 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/2.7*/bin/python2.7) $(shell command -v python2.7))
AUTOBAHN ?= $(VENV)/autobahn
$(AUTOBAHN)/installed:
	@test -n "$(PY27)" || { echo "make conformance needs Python 2.7 (pyenv install 2.7.18)" >&2; exit 1; }
	rm -rf $(AUTOBAHN)
	$(PYTHON) -m venv $(AUTOBAHN)/tool
	$(AUTOBAHN)/tool/bin/pip install --quiet virtualenv==20.15.1
	$(AUTOBAHN)/tool/bin/virtualenv --quiet -p $(PY27) $(AUTOBAHN)/py2
	$(AUTOBAHN)/py2/bin/pip install --quiet autobahntestsuite==25.10.1
	touch $@

# Every case but permessage-deflate's, then with compression on the smallest three of each
# deflate group; conformance-deflate runs every deflate case (about 9 minutes here).
conformance: venv $(AUTOBAHN)/installed
	$(BIN)/python tests/conformance/run.py $(AUTOBAHN)/py2/bin/wstest --outdir build/autobahn
	$(BIN)/python tests/conformance/run.py $(AUTOBAHN)/py2/bin/wstest --compression \
		--outdir build/autobahn-deflate

conformance-deflate: venv $(AUTOBAHN)/installed
	$(BIN)/python tests/conformance/run.py $(AUTOBAHN)/py2/bin/wstest --compression \
		--cases '12.*,13.*' --outdir build/autobahn-deflate

# A release: the sdist and the wheel in dist/, both carrying the UI that setup.py builds
# (docs/deployment.md); the wheel is built from the sdist, as pip would.
dist: venv
	rm -rf dist build
	$(BIN)/python -m build --outdir dist .
	$(BIN)/python -c "import sys, zipfile; names = zipfile.ZipFile(sys.argv[1]).namelist(); \
		sys.exit(0 if 'trio_broadcast/static/index.html' in names else 'no UI in ' + sys.argv[1])" dist/*.whl

test-frontend: ui
	cd frontend && npm test

test-browser: venv ui system-deps
	cd frontend && npm run test:browser

screenshot: venv ui system-deps
	cd frontend && UPDATE_SCREENSHOT=1 node --test --test-reporter=spec e2e/screenshot.test.mjs

bench: venv
	$(BIN)/trio-broadcast bench --spawn

clean:
	rm -rf $(VENV) frontend/node_modules trio_broadcast/static dist build
