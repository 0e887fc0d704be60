# Quick start: `make demo` (installs into .venv on first use, then runs the demo)
# and `make test`. Both work on a fresh machine with only python3.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test lint format bench

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/pooling_patterns.py --out-dir outputs/pooling_patterns

test: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check gpo_plugin tools tests configs

format: $(STAMP)
	$(VENV)/bin/ruff format gpo_plugin tools tests configs

bench: $(STAMP)
	$(PY) tools/benchmark_pooling.py
