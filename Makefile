# The two commands: `make run` (server + UI on :8000) and `make test` (everything CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test venv ui lint typecheck pytest test-frontend test-browser system-deps screenshot bench clean

run: venv ui
	$(BIN)/trio-broadcast serve --host $(HOST) --port $(PORT)

test: venv ui system-deps lint typecheck pytest test-frontend test-browser

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

test-frontend: ui
	cd frontend && npm test

test-browser: venv ui system-deps
	cd frontend && npm run test:browser

screenshot: venv ui system-deps
	cd frontend && UPDATE_SCREENSHOT=1 node --test --test-reporter=spec e2e/screenshot.test.mjs

bench: venv
	$(BIN)/trio-broadcast bench --spawn

clean:
	rm -rf $(VENV) frontend/node_modules trio_broadcast/static
