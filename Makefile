# Two set-up commands on a fresh machine (README): `make demo` and `make test`.
# Each creates .venv and installs what it needs: `make demo` the five distributions (what the
# demo runs), `make test`, `make lint` and `make install` the developer tools on top. Maven
# fetches Kafka and Elasticsearch into HOPSCOPE_CACHE_DIR (default ~/.cache/hopscope).
# `make shell` opens a shell with .venv/bin on PATH, so `hopscope` works as the README shows.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint reliability reliability-cluster install install-runtime shell up down status clean lab lab-down

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Every distribution of the workspace, editable, in one resolver run (so the root's extras find
# the layer distributions here rather than on an index). Each module has exactly one path:
# <layer>/src/hopscope/<layer>/, src/hopscope/{cli,stack,dashboards}.
# pip is not quieted: a first install downloads for a minute or more, and its progress lines
# are how a newcomer tells a slow download from a hang.
LAYERS := core ingest processors analysis
# The processors' native per-span core (processors/native/, Rust): pip builds it with maturin,
# which needs cargo; rustup's ~/.cargo/bin is put on PATH when it is there. Without cargo the
# processors run their Python core (hopscope.processors.core), and make says so.
ifneq ($(wildcard $(HOME)/.cargo/bin/cargo),)
export PATH := $(HOME)/.cargo/bin:$(PATH)
endif
NATIVE := $(if $(shell PATH="$(PATH)" command -v cargo),./processors/native,)
NATIVE_SOURCES := processors/native/pyproject.toml processors/native/Cargo.toml \
	$(wildcard processors/native/src/*.rs)
$(STAMP): pyproject.toml $(LAYERS:%=%/pyproject.toml) $(NATIVE_SOURCES) | $(BIN)/python
	@echo "make: installing hopscope into $(VENV) (pip's progress follows)"
	@$(if $(NATIVE),,echo "make: no cargo on PATH: the processors' native core is not built")
	$(BIN)/pip install $(LAYERS:%=-e ./%) $(NATIVE) -e '.[all]'
	touch $(STAMP)

# The developer tools (pytest, ruff, mypy, the notebook kernel, ...): the `dev` extra, over the
# same editable installs.
$(DEV_STAMP): $(STAMP)
	@echo "make: adding the developer tools to $(VENV)"
	$(BIN)/pip install $(LAYERS:%=-e ./%) $(NATIVE) -e '.[all,dev]'
	touch $(DEV_STAMP)

install-runtime: $(STAMP)

install: $(DEV_STAMP)

demo: install-runtime
	$(BIN)/hopscope stack up
	$(BIN)/hopscope demo
	@echo
	@echo "hopscope is installed in $(VENV)/bin, which is not on PATH: run \`make shell\` (or"
	@echo "\`. $(VENV)/bin/activate\`) for a shell where \`hopscope\` works, or call $(CURDIR)/$(BIN)/hopscope."

# A subshell (your $$SHELL) with the virtualenv active; `exit` returns. VIRTUAL_ENV is set as
# `activate` sets it, so prompts and tools that read it see the environment.
shell: install-runtime
	@echo "make: a shell with $(CURDIR)/$(BIN) on PATH; type exit to leave it"
	@VIRTUAL_ENV="$(CURDIR)/$(VENV)" PATH="$(CURDIR)/$(BIN):$$PATH" $${SHELL:-/bin/sh}

# Every test, the cluster fault cases included (tests/faults/test_cluster_faults.py starts a
# cluster of its own, three brokers and three Elasticsearch nodes: about ten minutes of the run).
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fault suite alone; rewrites the measured ledger table in docs/RELIABILITY.md.
reliability: install
	$(BIN)/python -m pytest tests/faults -p no:cacheprovider --reliability-report docs/RELIABILITY.md

# The cluster cases alone (three brokers and three Elasticsearch nodes started for them; eight
# to fifteen minutes on two cores, depending on the load). `make test` and `make reliability`
# run them too.
reliability-cluster: install
	$(BIN)/python -m pytest tests/faults/test_cluster_faults.py -p no:cacheprovider

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The reference payment system (deploy/reference/payments/, `hopscope lab`): builds the
# OpenTelemetry Collector once (Go; cached under HOPSCOPE_CACHE_DIR), then one run with a fault
# and its report beside the ground truth. Needs postgresql-15 and redis-server (Debian).
LAB_FAULT ?= node-kill
LAB_MINUTES ?= 2
lab: install
	deploy/reference/otelcol/build-collector.sh >/dev/null
	$(BIN)/hopscope lab run --fault $(LAB_FAULT) --minutes $(LAB_MINUTES)

lab-down:
	$(BIN)/hopscope lab down

up: install-runtime
	$(BIN)/hopscope stack up

down:
	$(BIN)/hopscope stack down

status:
	$(BIN)/hopscope stack status

clean:
	-$(BIN)/hopscope stack down
	rm -rf $(VENV) build dist *.egg-info */src/*.egg-info src/*.egg-info
