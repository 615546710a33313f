# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.condensekit-installed
PLUGINS := $(wildcard plugins/*/pyproject.toml)
FIXTURES := tests/fixtures/condensekit-herding
# The demo's own registry, so it never mixes with yours.
DEMO_REGISTRY ?= $(CURDIR)/registry/demo

.PHONY: install test lint demo clean-demo

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml $(PLUGINS) $(FIXTURES)/pyproject.toml
	$(PIP) install -e '.[dev]' $(foreach p,$(PLUGINS),-e $(dir $(p))) -e $(FIXTURES)
	touch $(STAMP)

install: $(STAMP)

test: install
	$(VENV)/bin/pytest -q

# Static checks (configured in pyproject.toml); `test` does not depend on them.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# random, dm, datadam and dance on the embedded cifar10-mini: distilled, evaluated, compared, and
# their image grids written to $(DEMO_REGISTRY)/grids/ (the time it takes: scripts/demo.sh).
demo: install
	CONDENSEKIT_REGISTRY=$(DEMO_REGISTRY) bash scripts/demo.sh $(VENV)/bin/condensekit

clean-demo:
	rm -rf $(DEMO_REGISTRY)
