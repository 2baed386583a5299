# Every target creates or reuses .venv and installs the pinned versions
# (constraints.txt) before it runs; only Python 3.10+ is needed beforehand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WHEELS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels)

.PHONY: setup demo record test lint bench docs

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(WHEELS) -c constraints.txt -e ".[torchrl,jax,video,envs,dev,bench,cli,docs,loggers,ray]"
	touch $(STAMP)

# The main job: record CartPole with `funrec record` into runs/<env>-<time>/ and print
# where it went; pass options with ARGS, e.g. make record ARGS="--steps 2000 --num-envs 4".
demo: record

record: setup
	$(BIN)/funrec record $(ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	CI=$${CI:-true} $(BIN)/python -m pytest -q -ra

bench: setup
	$(BIN)/python -m benchmarks

# The documentation site (mkdocs-material, API reference from the docstrings) in site/;
# any warning fails the build. (NO_MKDOCS_2_WARNING: mute material's end-of-life banner.)
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
