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

# Every distribution of the workspace, editable, in one resolver run (so the root's extras find
# the layer distributions here rather than on an index). Each module has exactly one path:
# <layer>/src/hopscope/<layer>/, src/hopscope/{cli,stack,dashboards}.
LAYERS := core ingest processors analysis
$(STAMP): pyproject.toml $(LAYERS:%=%/pyproject.toml) | $(BIN)/python
	$(BIN)/pip install -q $(LAYERS:%=-e ./%) -e '.[all,dev]'
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
	rm -rf $(VENV) build dist *.egg-info */src/*.egg-info src/*.egg-info
