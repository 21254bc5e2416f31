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

.PHONY: setup demo test lint typecheck pytest clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -c constraints.txt -e ".[all,dev]"
	touch $@

lint: setup
	$(PY) -m ruff check region_rerank tests scripts
	$(PY) -m ruff format --check region_rerank tests scripts

typecheck: setup
	$(PY) -m mypy

pytest: setup
	$(PY) -m pytest

# The main job: the offline end-to-end comparison on the synthetic clutter world.
demo: setup
	$(VENV)/bin/region-rerank demo --out out/demo

# The test command: lint, type check, then the whole suite.
test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
