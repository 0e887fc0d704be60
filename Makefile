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

.PHONY: install demo demo-video demo-grid demo-patterns demo-dml demo-pml demo-inshop test lint format bench gpu-check

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

# VSE∞ on bundled synthetic data: generates it if missing, trains GPO and the average-pooling
# baseline (BiGRU text) and prints the retrieval tables (~2 min on 2 cores).
demo: $(STAMP)
	$(PY) tools/demos/run_demo.py

# Video–text retrieval: a synthetic set in HGR's layout (variable-length frame sets), GPO vs
# average pooling, both tables (HGR's protocol) and GPO's theta over frames (a few minutes).
demo-video: $(STAMP)
	$(PY) tools/demos/run_video_demo.py

# Grid features from raw pixels: scikit-image's photos, EfficientNet-Lite0 (ImageNet weights)
# fine-tuned end to end + MiniLM text, GPO vs average pooling (a few minutes on 2 cores).
demo-grid: $(STAMP)
	$(PY) tools/demos/run_grid_demo.py

# GPO imitating known pooling strategies (VSE∞ supplement), ~2 min.
demo-patterns: $(STAMP)
	$(PY) tools/demos/pooling_patterns.py --out-dir outputs/pooling_patterns

# GSP vs average pooling on scikit-learn's digits, class-disjoint (~4 min).
demo-dml: $(STAMP)
	$(PY) tools/demos/dml_digits_demo.py

# The same comparison through pytorch-metric-learning's trainer, tester and hooks (~4 min).
demo-pml: $(STAMP)
	$(PY) tools/demos/pml_digits_demo.py

# The In-Shop configs (GSP and average pooling) trained and tested from the command line on a
# generated set in the In-Shop layout (a smoke run, ~1.5 min); `--generate` only writes the set.
demo-inshop: $(STAMP)
	$(PY) tools/demos/inshop_demo.py

test: $(STAMP)
	$(PY) -m pytest -q tests

LINTED := gpo_plugin tools tests configs benchmarks

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

format: $(STAMP)
	$(VENV)/bin/ruff check --fix $(LINTED)
	$(VENV)/bin/ruff format $(LINTED)

# Every benchmark table of docs/benchmarks.md (CPU, one thread; ~50 min on 2 cores; add
# BENCH_ARGS='--device cuda' on a GPU machine).
bench: $(STAMP)
	$(PY) benchmarks/benchmark_pooling.py $(BENCH_ARGS)
	$(PY) benchmarks/benchmark_train_step.py $(BENCH_ARGS)
	$(PY) benchmarks/benchmark_eval.py $(BENCH_ARGS)
	$(PY) benchmarks/benchmark_gsp.py $(BENCH_ARGS)
	$(PY) benchmarks/benchmark_metrics.py $(BENCH_ARGS)
	$(PY) benchmarks/benchmark_pml_tester.py $(BENCH_ARGS)

# On a machine with a CUDA GPU: the CUDA tests, every benchmark on the GPU at reduced repeats
# and the memory check, into outputs/gpu_check_report.md (under 8 minutes; docs/benchmarks.md).
gpu-check: $(STAMP)
	PY=$(PY) tools/gpu_check.sh outputs/gpu_check_report.md
