"""Forward+backward time of GPO against its per-sample reference and baseline poolers.

All methods run in one process on the same inputs; the table reports the median time
of repeated runs and the ratio to GPO, and checks GPO equals the per-sample reference.

    python benchmarks/benchmark_pooling.py [--device cuda] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch

from gpo_plugin.models.necks import GPO, AvgPooling, KMaxPooling, MaxPooling

from references.gpo import batched_reference_gpo, per_sample_gpo

# (name, B, L, D, smallest set size): region sets shrink under 20 % region dropout,
# captions vary in length, grids lose vectors under size augmentation.
SHAPES = [
    ('region-like', 128, 36, 1024, 20),
    ('text-like', 128, 32, 1024, 8),
    ('grid-like', 32, 256, 2048, 160),
]


def fwd_bwd_once(
    pool: Callable, features: torch.Tensor, lengths: torch.Tensor, upstream: torch.Tensor
) -> tuple[float, torch.Tensor]:
    """Seconds of one forward + backward, and the pooled output."""
    x = features.detach().requires_grad_(True)
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    pooled = pool(x, lengths)
    (pooled * upstream).sum().backward()
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, pooled.detach()


def time_methods(
    methods: dict[str, Callable], features: torch.Tensor, lengths: torch.Tensor, repeats: int
) -> dict[str, tuple[float, torch.Tensor]]:
    """Median time per method; methods alternate within each round so that load from
    other processes hits all of them alike. Round 0 warms up and is not counted."""
    upstream = torch.randn(features.shape[0], features.shape[2], device=features.device)
    times: dict[str, list[float]] = {m: [] for m in methods}
    outputs = {}
    for _ in range(repeats + 1):
        for method, pool in methods.items():
            seconds, outputs[method] = fwd_bwd_once(pool, features, lengths, upstream)
            times[method].append(seconds)
    return {m: (statistics.median(t[1:]), outputs[m]) for m, t in times.items()}


def machine(device: str) -> str:
    if device.startswith('cuda'):
        return torch.cuda.get_device_name(device)
    return f'{platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU thread(s)'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    gpo = GPO().to(device)
    methods = {
        'GPO': lambda x, n: gpo.pool(x, n)[0],
        'reference: BiGRU per sample, sort on set axis': lambda x, n: batched_reference_gpo(
            gpo, x, n
        )[0],
        'reference: Python loop per sample': lambda x, n: per_sample_gpo(gpo, x, n)[0],
        'average': lambda x, n: AvgPooling().pool(x, n)[0],
        'max': lambda x, n: MaxPooling().pool(x, n)[0],
        'K-max (K=20)': lambda x, n: KMaxPooling(k=20).pool(x, n)[0],
    }
    print(
        f'device: {machine(args.device)}; torch {torch.__version__}; '
        f'median of {args.repeats} forward+backward runs'
    )
    print('| shape (B, L, D) | method | time (ms) | time / GPO | max abs diff to GPO |')
    print('|---|---|---|---|---|')
    for name, batch, set_len, dim, smallest in SHAPES:
        features = torch.randn(batch, set_len, dim, device=device)
        lengths = torch.randint(smallest, set_len + 1, (batch,), device=device)
        lengths[0] = set_len
        results = time_methods(methods, features, lengths, args.repeats)
        gpo_time, gpo_out = results['GPO']
        for method, (seconds, out) in results.items():
            is_gpo = method.startswith(('GPO', 'reference'))
            diff = (out - gpo_out).abs().max().item() if is_gpo else float('nan')
            diff_text = f'{diff:.1e}' if diff == diff else '-'
            print(
                f'| {name} ({batch}, {set_len}, {dim}) | {method} | {seconds * 1e3:.1f} | '
                f'{seconds / gpo_time:.2f}x | {diff_text} |',
                flush=True,
            )


if __name__ == '__main__':
    main()
