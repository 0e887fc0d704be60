"""Resident memory stays flat over variable-shape training steps (issue 20: a per-shape
kernel cache in the products grew RSS by gigabytes, since region sets and captions change
shape almost every batch). benchmarks/benchmark_memory.py checks the demos' full loops."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import statistics
from collections.abc import Callable

import pytest
import torch

from gpo_plugin.models.encoders import BiGRUTextEncoder, PrecompRegionEncoder

MIB = 2**20
PAGE = os.sysconf('SC_PAGE_SIZE')


def rss_bytes() -> int:
    with open('/proc/self/statm') as handle:
        return int(handle.read().split()[1]) * PAGE


def release_free_heap() -> None:
    """Give the free pages of the malloc heap back to the OS (glibc's malloc_trim). After
    earlier tests in the same process freed much memory, a leak could otherwise be served
    from pages still resident and never show in the RSS."""
    libc = ctypes.util.find_library('c')
    if libc is not None and hasattr(ctypes.CDLL(libc), 'malloc_trim'):
        ctypes.CDLL(libc).malloc_trim(0)


def rss_growth(step: Callable[[int], None], steps: int, warmup: int, window: int) -> float:
    """Bytes by which the median RSS of the last ``window`` steps exceeds the median of the
    ``window`` steps right after ``warmup`` (medians: allocator noise is not growth)."""
    release_free_heap()
    samples = []
    for i in range(steps):
        step(i)
        samples.append(rss_bytes())
    return statistics.median(samples[-window:]) - statistics.median(
        samples[warmup : warmup + window]
    )


def variable_shape_step() -> Callable[[int], None]:
    """A forward + backward of region encoder + BiGRU text encoder (GPO on both) on a batch
    whose size, set sizes and caption lengths change every step."""
    torch.manual_seed(0)
    img_enc = PrecompRegionEncoder(in_channels=128, embed_dim=64, pooling=dict(type='GPO'))
    txt_enc = BiGRUTextEncoder(vocab_size=500, word_dim=32, embed_dim=64, pooling=dict(type='GPO'))
    params = [*img_enc.parameters(), *txt_enc.parameters()]
    optimizer = torch.optim.SGD(params, lr=1e-3)
    generator = torch.Generator().manual_seed(1)

    def step(_: int) -> None:
        batch = int(torch.randint(4, 17, (), generator=generator))
        regions = int(torch.randint(10, 37, (), generator=generator))
        words = int(torch.randint(5, 33, (), generator=generator))
        region_lengths = torch.randint(1, regions + 1, (batch,), generator=generator)
        region_lengths[0] = regions
        caption_lengths = torch.randint(1, words + 1, (batch,), generator=generator)
        caption_lengths[0] = words
        img = img_enc(torch.randn(batch, regions, 128, generator=generator), region_lengths)
        tokens = torch.randint(1, 500, (batch, words), generator=generator)
        txt = txt_enc(tokens, caption_lengths)
        loss = (img @ txt.t()).logsumexp(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def test_rss_flat_over_variable_shape_training_steps():
    step = variable_shape_step()
    growth = rss_growth(step, steps=160, warmup=30, window=30)
    # A per-shape cache at these sizes adds hundreds of kilobytes per new shape: 130 steps of
    # mostly new shapes would add far more than this allowance for allocator noise.
    assert growth < 24 * MIB, f'RSS grew by {growth / MIB:.1f} MiB over 130 steps'


def test_the_measurement_sees_a_leak_of_that_size():
    step = variable_shape_step()
    kept = []

    def leaking(i: int) -> None:
        step(i)
        kept.append(torch.ones(256 * 1024))  # 1 MiB per step, like a per-shape cache

    assert rss_growth(leaking, steps=80, warmup=10, window=15) > 24 * MIB


def test_benchmark_verdict_uses_medians_after_warm_up():
    from argparse import Namespace

    from benchmark_memory import Recorder, growth_row

    args = Namespace(warmup_frac=0.1, window=10, tolerance=5.0)
    flat, leaking = Recorder(200), Recorder(200)
    flat.samples = [1000 * MIB] * 20 + [1030 * MIB, 1010 * MIB] * 90  # noise, no trend
    leaking.samples = [1000 * MIB + i * MIB for i in range(200)]  # +1 MiB per iteration
    assert growth_row('flat', flat, args)[1]
    row, passed = growth_row('leaking', leaking, args)
    assert not passed and 'FAIL' in row
    # Warm-up never ends before the third epoch (the grid demo unfreezes its backbone late).
    late = Recorder(200)
    late.samples = [500 * MIB] * 60 + [1000 * MIB] * 140
    late.third_epoch_start = 60
    assert growth_row('late', late, args)[1]


@pytest.mark.slow
def test_benchmark_script_runs_the_vse_demo_loop():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, str(root / 'benchmarks' / 'benchmark_memory.py')]
        + ['--demos', 'vse', '--iters', '30', '--window', '5'],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    assert '| VSE demo (vse_gpo_demo.py, Runner) | 30 |' in done.stdout, done.stdout
