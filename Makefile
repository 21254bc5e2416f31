# Fresh machine: `make demo` or `make test` set everything up themselves (a .venv here).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARCH := $(shell uname -m)
ifeq ($(ARCH),aarch64)
TORCH := torch==2.9.1 torchvision==0.24.1
else
TORCH := torch==2.14.1 torchvision==0.29.1
endif

.PHONY: setup wheelhouse demo test test-pythons lint typecheck docs pytest clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -c constraints.txt -e ".[all,dev]"
	touch $@

# Wheels of the adapter extras' requirements, so tests can install each extra into a clean
# virtual environment offline (tests/test_extras_venv.py).
wheelhouse: .wheelhouse/.done

.wheelhouse/.done: constraints.txt | setup
	$(PY) -m pip download -q -d .wheelhouse -c constraints.txt llama-index-core langchain-core
	touch $@

lint: setup
	$(PY) -m ruff check region_rerank integrations tests scripts examples
	$(PY) -m ruff format --check region_rerank integrations tests scripts examples

typecheck: setup
	$(PY) -m mypy

pytest: setup wheelhouse
	$(PY) -m pytest

# The main job: the offline end-to-end comparison on the synthetic clutter world.
demo: setup
	$(VENV)/bin/region-rerank demo --out out/demo

# The docs site (mkdocs-material + mkdocstrings) into build/site; warnings are errors.
docs: setup
	NO_MKDOCS_2_WARNING=1 PYTHONPATH=. $(VENV)/bin/mkdocs build --strict --quiet

# The test command: lint, type check, the docs build, then the whole suite.
test: lint typecheck docs pytest

# The core and adapter tiers on the oldest and newest supported Pythons (CI runs this after
# `make test`; each tier has its own .venv-X.Y).
TIER_PYTHONS ?= 3.10 3.13
test-pythons:
	for v in $(TIER_PYTHONS); do bash scripts/python_tier.sh $$v || exit 1; done

clean:
	rm -rf $(VENV) .venv-3.* .wheelhouse .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
