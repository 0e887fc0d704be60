"""The tool names earlier docs and issues use (tools/eval_ensemble.py, ...) run the grouped tools."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALIASES = {
    'eval_ensemble': 'analysis_tools',
    'check_dataset': 'analysis_tools',
    'dml_mlrc_test': 'analysis_tools',
    'convert_vse_infty': 'model_converters',
}


@pytest.mark.parametrize('name', sorted(ALIASES))
def test_alias_prints_the_grouped_tools_usage(name):
    def usage(path):
        run = subprocess.run(
            [sys.executable, str(path), '--help'], capture_output=True, text=True, cwd=ROOT
        )
        assert run.returncode == 0, run.stderr
        return run.stdout

    alias = usage(ROOT / 'tools' / f'{name}.py')
    grouped = usage(ROOT / 'tools' / ALIASES[name] / f'{name}.py')
    assert alias == grouped and f'usage: {name}.py' in alias
