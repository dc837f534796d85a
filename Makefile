# Governor — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: demo test lint types unit integration up schemas layer clean

demo: $(VENV)/.local  ## set up and run the closed-loop demo on the embedded stack
	$(BIN)/governor demo

test: $(VENV)/.dev lint types  ## lint, type-check and run the whole suite
	$(BIN)/pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check .

types: $(VENV)/.dev
	$(BIN)/mypy

unit: $(VENV)/.dev
	$(BIN)/pytest tests/unit tests/functional

integration: $(VENV)/.dev
	$(BIN)/pytest tests/integration

up: $(VENV)/.local  ## embedded broker + ClickHouse + worker until Ctrl-C
	$(BIN)/governor up

layer: $(VENV)/.local  ## the Lambda layer zips (agent + extension), x86_64 and arm64, in dist/
	$(BIN)/governor package lambda-layer --out dist

schemas: $(VENV)/.dev  ## regenerate schemas/json from the event classes
	$(BIN)/python -m schemas.jsonschema

$(VENV)/.venv:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else \
		"Governor needs Python 3.11 or newer; set PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	touch $@

$(VENV)/.local: pyproject.toml $(VENV)/.venv
	$(PIP) install --quiet -e '.[local]'
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.venv
	$(PIP) install --quiet -e '.[dev]'
	touch $@ $(VENV)/.local

clean:
	rm -rf $(VENV) .governor .pytest_cache .mypy_cache .ruff_cache *.egg-info dist
