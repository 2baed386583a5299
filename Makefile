# Every target creates or reuses .venv and installs the pinned versions
# (constraints.txt) before it runs; only Python 3.10+ is needed beforehand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WHEELS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels)

.PHONY: setup demo test lint bench

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(WHEELS) -c constraints.txt -e ".[torchrl,jax,video,envs,dev,bench,ray]"
	touch $(STAMP)

demo: setup
	$(BIN)/python examples/quickstart.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	CI=$${CI:-true} $(BIN)/python -m pytest -q -ra

bench: setup
	$(BIN)/python -m benchmarks
