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

.PHONY: install demo demo-grid demo-patterns demo-dml test lint format bench

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

# VSE∞ on bundled synthetic data: generates it if missing, trains GPO and the average-pooling
# baseline (BiGRU text) and prints the retrieval tables (~2 min on 2 cores).
demo: $(STAMP)
	$(PY) tools/run_demo.py

# Grid features from raw pixels: scikit-image's photos, EfficientNet-Lite0 (ImageNet weights)
# fine-tuned end to end + MiniLM text, GPO vs average pooling (a few minutes on 2 cores).
demo-grid: $(STAMP)
	$(PY) tools/run_grid_demo.py

# GPO imitating known pooling strategies (VSE∞ supplement), ~2 min.
demo-patterns: $(STAMP)
	$(PY) tools/pooling_patterns.py --out-dir outputs/pooling_patterns

# GSP vs average pooling on scikit-learn's digits, class-disjoint (~4 min).
demo-dml: $(STAMP)
	$(PY) tools/dml_digits_demo.py

test: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check gpo_plugin tools tests configs

format: $(STAMP)
	$(VENV)/bin/ruff format gpo_plugin tools tests configs

bench: $(STAMP)
	$(PY) benchmarks/benchmark_pooling.py
	$(PY) benchmarks/benchmark_eval.py
	$(PY) benchmarks/benchmark_gsp.py
	$(PY) benchmarks/benchmark_metrics.py
