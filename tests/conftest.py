"""Shared pytest set-up: one CPU thread (2-core machines thrash with more), offline hub, and
the benchmark references and tools on the import path."""

import os
import sys
from pathlib import Path

# Tests import the reference formulations (benchmarks/references) and the tools' modules, which
# are grouped as mmpretrain's (tools/demos, tools/analysis_tools, tools/misc, ...).
ROOT = Path(__file__).resolve().parents[1]
TOOL_FOLDERS = ['analysis_tools', 'demos', 'misc', 'model_converters']
sys.path[:0] = [str(ROOT / 'benchmarks'), str(ROOT / 'tools')] + [
    str(ROOT / 'tools' / folder) for folder in TOOL_FOLDERS
]

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MKL_NUM_THREADS', '1')
os.environ['HF_HUB_OFFLINE'] = '1'
os.environ['TRANSFORMERS_OFFLINE'] = '1'

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

import gpo_plugin  # noqa: E402,F401  (registers every module once)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
