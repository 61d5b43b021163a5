# brokermesh: `make up` runs the platform, `make test` runs every check.
# Both create the virtual environment and install the pinned dependencies
# first, so they work on a fresh clone.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# checkov pins packaging<24, which pytest 9 refuses, so it gets a venv of its own.
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
CHECKOV_VERSION := 3.3.30

.PHONY: venv gen up test lint typecheck pytest proto-baseline lock clean

venv: $(STAMP) $(CHECKOV_STAMP)

# Pinned direct dependencies live in pyproject.toml; requirements.lock pins
# the whole resolved set so every machine installs the same versions.
$(STAMP): pyproject.toml setup.py requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

gen: $(STAMP)
	$(BIN)/buf generate

up: $(STAMP)
	$(BIN)/brokermesh up

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/python tools/typecheck.py

pytest: $(STAMP) $(CHECKOV_STAMP)
	BROKERMESH_CHECKOV=$(CURDIR)/$(CHECKOV_VENV)/bin/checkov $(BIN)/python -m pytest

# Accept the current contracts as the compatibility baseline (after a release).
proto-baseline: $(STAMP)
	$(BIN)/buf build -o proto/baseline.binpb

# Re-resolve and pin every dependency after changing pyproject.toml.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	.lock-venv/bin/pip freeze --exclude-editable | sort > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .brokermesh

-include mk/*.mk
