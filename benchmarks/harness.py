"""Shared timing harness of the benchmark scripts in this folder.

Every script times the implementations it compares *interleaved*: each round runs every
method once, in the same order, so that load from other processes on a shared machine
hits all of them alike. Rounds start with warm-up runs that are not counted; the table
reports the median of the counted runs and their spread, written ±x %: half the min-max
range of the counted runs as a percentage of the median. Ratios are taken between medians from the same process.

    from harness import add_common_args, setup, time_interleaved, describe_run
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


def add_common_args(parser: argparse.ArgumentParser, repeats: int = 5, warmup: int = 1) -> None:
    """``--device``, ``--repeats``, ``--warmup`` and ``--threads``, shared by every script."""
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    parser.add_argument(
        '--repeats', type=int, default=repeats, help=f'counted runs (>= 5; default {repeats})'
    )
    parser.add_argument('--warmup', type=int, default=warmup, help='uncounted first runs')
    parser.add_argument(
        '--threads',
        type=int,
        default=int(os.environ.get('OMP_NUM_THREADS', '1')),
        help='torch CPU threads (default: $OMP_NUM_THREADS or 1)',
    )


def setup(args: argparse.Namespace) -> torch.device:
    """Apply ``--threads``, check ``--device`` and ``--repeats``; return the device."""
    if args.repeats < 5:
        raise SystemExit(f'--repeats must be at least 5 (got {args.repeats}).')
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device is visible to torch.')
    torch.set_num_threads(args.threads)
    return torch.device(args.device)


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work so that a timer reads finished work, not launches."""
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def machine(device: torch.device | str) -> str:
    """One line naming the hardware the figures come from."""
    device = torch.device(device)
    if device.type == 'cuda':
        return f'GPU {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})'
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as handle:
            fields = dict(
                line.split(':', 1) for line in handle.read().split('\n\n')[0].splitlines()
            )
        fields = {key.strip(): value.strip() for key, value in fields.items()}
        # Family and model tell CPU generations apart where the name does not ("AMD EPYC"):
        # their vector units, and so these figures, differ (docs/benchmarks.md).
        cpu = f'{fields["model name"]} (family {fields["cpu family"]}, model {fields["model"]})'
    except (OSError, KeyError, ValueError):
        pass
    return f'CPU {cpu}, {os.cpu_count()} cores visible'


def describe_run(title: str, device: torch.device, args: argparse.Namespace, shapes: str) -> None:
    """Print the header every table carries: what, where, threads, shapes, repeats."""
    print(f'\n### {title}\n')
    print(
        f'- machine: {machine(device)}; torch {torch.__version__}; '
        f'{torch.get_num_threads()} torch thread(s); load average at start '
        f'{os.getloadavg()[0]:.2f}'
    )
    print(f'- date: {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}')
    print(f'- shapes: {shapes}')
    print(
        f'- timing: {args.warmup} warm-up + {args.repeats} counted runs per method, methods '
        'interleaved within each round; median (± half the min-max range, % of the median)\n'
    )


@dataclass
class Timing:
    """Counted run times (seconds) of one method, and its last output."""

    seconds: list[float] = field(default_factory=list)
    output: Any = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> float:
        """(max - min) / median of the counted runs."""
        return (max(self.seconds) - min(self.seconds)) / self.median

    def cell(self, unit: float = 1e3, digits: int = 1) -> str:
        """'median (±half the min-max range, % of the median)', in ms (or ``unit``/s)."""
        return f'{self.median * unit:.{digits}f} (±{50 * self.spread:.0f} %)'


def time_interleaved(
    methods: dict[str, Callable[[], Any]],
    repeats: int,
    warmup: int,
    device: torch.device | str = 'cpu',
    before_each: Callable[[], None] | None = None,
) -> dict[str, Timing]:
    """Time every method ``warmup + repeats`` times, one run of each per round.

    Args:
        methods: name -> zero-argument callable doing the whole timed work (forward and
            backward, an optimizer step, ...); its return value is kept as ``output``.
        repeats: counted rounds.
        warmup: uncounted rounds first (allocator, caches, lazy initialisation).
        device: the device the work runs on; CUDA is synchronised around each run.
        before_each: untimed set-up called before every run (e.g. clearing gradients).
    """
    timings = {name: Timing() for name in methods}
    for round_index in range(warmup + repeats):
        for name, fn in methods.items():
            if before_each is not None:
                before_each()
            synchronize(device)
            start = time.perf_counter()
            output = fn()
            synchronize(device)
            elapsed = time.perf_counter() - start
            timings[name].output = output
            if round_index >= warmup:
                timings[name].seconds.append(elapsed)
    return timings
