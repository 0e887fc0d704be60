"""Every benchmark script runs end to end at a tiny size and prints its table (scripts that
no test runs rot: the training-step benchmark once lagged the data format by a release)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAST = ['--repeats', '5', '--warmup', '0', '--threads', '1']
SCRIPTS = {
    'benchmark_pooling.py': ['--shapes', 'text'],
    'benchmark_train_step.py': [
        *('--batch', '8', '--feat-dim', '64', '--embed-dim', '32'),
        *('--word-dim', '16', '--vocab', '50'),
    ],
    'benchmark_eval.py': ['--images', '60', '--dim', '16', '--fold-size', '20'],
    'benchmark_test_e2e.py': ['--images', '20'],
    'benchmark_gsp.py': [
        *('--batch', '2', '--channels', '32', '--grid', '3'),
        *('--dim', '16', '--prototypes', '4'),
    ],
    'benchmark_metrics.py': ['--num', '400', '--classes', '80', '--dim', '8'],
    'benchmark_grid.py': ['--settings', 'resnet50:64', 'resnet50:64:cp', '--batch-size', '2'],
    'benchmark_pml_tester.py': ['--num', '400', '--classes', '80', '--dim', '8', '--torch-knn'],
}


def run_script(name: str, args: list[str]) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / 'benchmarks' / name), *args, *FAST],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# Over ~20 s on 2 shared cores: deselected by `-m "not slow"`.
SLOW = {'benchmark_test_e2e.py'}


@pytest.mark.parametrize(
    'name', [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(SCRIPTS)]
)
def test_script_prints_a_table_with_machine_and_runs(name):
    out = run_script(name, SCRIPTS[name])
    assert '- machine: CPU' in out
    assert '5 counted runs per method' in out
    table = [line for line in out.splitlines() if line.startswith('|')]
    assert len(table) >= 4, out  # header, rule and at least two compared rows
    if name == 'benchmark_test_e2e.py':  # the published flow and tools/test.py agree
        assert 'largest difference 0:' in out, out
    if name == 'benchmark_eval.py':
        assert '| True |' in out and '| False |' not in out
    if name in ('benchmark_metrics.py', 'benchmark_pml_tester.py'):  # values equal PML's
        differences = [float(v) for v in re.findall(r'- PML\| = (\S+)', out)]
        assert differences and max(differences) < 1e-6, out


def test_eval_benchmark_on_collapsed_embeddings_matches_the_reference():
    """--collapsed puts most candidates inside the certification bands (the float64 path)."""
    out = run_script('benchmark_eval.py', [*SCRIPTS['benchmark_eval.py'], '--collapsed'])
    assert 'within ~1e-3 of one direction' in out
    assert '| True |' in out and '| False |' not in out
    assert 'lower bound: the float32 score product alone' in out
