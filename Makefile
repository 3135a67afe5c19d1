# The one entry point for developers and CI. `make help` lists the targets.

VENV ?= .venv
PYTHON := $(VENV)/bin/python
# Services run as `python -m services.<name>` with these on the import path.
export PYTHONPATH := $(CURDIR):$(CURDIR)/libs/gen

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast test-clients lint protos check

help: ## List the targets with what they do
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## Create .venv and install the project, its extras and Cerbos (idempotent)
	@bash tools/install.sh

run: install ## Start the whole gateway on 127.0.0.1 and print the OpenAI exports; Ctrl-C stops it
	@$(PYTHON) -m tools.stack run

test: install ## Run the whole test suite (unit, integration, e2e, Go/Kotlin/Node clients)
	@bash tools/ensure_redis.sh
	@bash tools/install_clients.sh
	$(PYTHON) -m pytest -q

test-fast: install ## Run the unit tests only (no servers started)
	$(PYTHON) -m pytest -q tests/unit

test-clients: install ## Install the Go and Kotlin toolchains (apt), then run the non-Python gRPC client tests
	bash tools/install_clients.sh
	$(PYTHON) -m pytest -q tests/clients tests/e2e/test_node_client.py

lint: install ## Run ruff on the Python code and buf lint on the protos
	$(PYTHON) -m ruff check .
	$(PYTHON) -c "from tools import protos; protos.sync_third_party(); protos.lint()"

protos: install ## Lint the protos and regenerate the Python stubs and the descriptor set
	$(PYTHON) -m tools.protos

bench: install ## Benchmark against LiteLLM and Portkey (BENCH_SECONDS=5 for a short run); see docs/benchmarks.md
	$(PYTHON) -m tools.bench

check: lint ## Lint, fail on stale stubs or a breaking contract change, then run the whole test suite
	$(PYTHON) -m tools.protos check
	$(PYTHON) -m tools.protos breaking
	@$(MAKE) --no-print-directory test
