# signoff — `make run` starts it, `make test` checks it. Both set up .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test bench lint e2e clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "signoff needs Python 3.11 or newer; set PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/signoff serve

lint: $(VENV)/.installed-test
	$(BIN)/ruff check signoff server adapters tests benchmarks
	$(BIN)/ruff format --check signoff server adapters tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks

# End to end with the real Claude Code (directly and through the plugin in plugin/) and the MCP Inspector CLI
# from npm (not part of `make test`).
# Node 20's npm picks Claude Code 2.1.197; Inspector 0.14.3 is the newest that runs on Node 20.
E2E := .e2e
e2e: $(VENV)/.installed-test
	@if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then \
		echo "make e2e: skipped: node and npm are not installed (apt-get install nodejs npm)"; exit 0; fi; \
	npm install --silent --no-fund --no-audit --prefix $(E2E) @anthropic-ai/claude-code @modelcontextprotocol/inspector@0.14.3 @modelcontextprotocol/server-filesystem && \
	$(E2E)/node_modules/.bin/claude --version && \
	SIGNOFF_E2E_BIN=$(CURDIR)/$(E2E)/node_modules/.bin $(BIN)/python -m pytest tests/e2e -v -p no:cacheprovider

clean:
	rm -rf $(VENV) $(E2E) .pytest_cache .mypy_cache .ruff_cache
