# Two set-up commands on a fresh machine (README): `make demo` and `make test`.
# Each creates .venv and installs what it needs; Maven fetches Kafka and Elasticsearch.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint reliability install up down status clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Editable install. hopscope/ingest, processors and analysis are symlinks to the top-level
# folders, so a checkout imports hopscope.ingest the same way with or without an install.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/hopscope stack up
	$(BIN)/hopscope demo

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fault suite alone; rewrites the measured ledger table in docs/RELIABILITY.md.
reliability: install
	$(BIN)/python -m pytest tests/faults -p no:cacheprovider --reliability-report docs/RELIABILITY.md

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

up: install
	$(BIN)/hopscope stack up

down:
	$(BIN)/hopscope stack down

status:
	$(BIN)/hopscope stack status

clean:
	-$(BIN)/hopscope stack down
	rm -rf $(VENV) build dist *.egg-info
