"""Forward+backward speed of GSP against average pooling + Linear and against the reference
formulation (100 unrolled fixed-point iterations, autograd through all of them), at ResNet-50
shapes, all in one process. Prints a markdown table with ratios.

    OMP_NUM_THREADS=2 python benchmarks/benchmark_gsp.py [--batch 32 --channels 2048 --grid 7
                                                      --dim 512 --prototypes 64 --repeats 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

from gpo_plugin.models.necks import GSP
from gpo_plugin.models.utils.partial_transport import (
    attribute_vectors,
    partial_transport,
    pooling_weights,
)

from references.gsp import unrolled_gsp, unrolled_transport


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--channels', type=int, default=2048)
    parser.add_argument('--grid', type=int, default=7)
    parser.add_argument('--dim', type=int, default=512)
    parser.add_argument('--prototypes', type=int, default=64)
    parser.add_argument('--mu', type=float, default=0.3)
    parser.add_argument('--gamma', type=float, default=5.0)
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    return parser.parse_args()


def time_fwd_bwd(fn, inputs: list[torch.Tensor], repeats: int, warmup: int) -> float:
    """Median seconds of forward + backward of sum(outputs * fixed random weights)."""
    with torch.no_grad():
        probes = [torch.randn_like(o) for o in fn()]
    times = []
    for step in range(warmup + repeats):
        for t in inputs:
            t.grad = None
        start = time.perf_counter()
        outputs = fn()
        sum((o * p).sum() for o, p in zip(outputs, probes, strict=True)).backward()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    torch.manual_seed(0)
    b, c, g, d, m = args.batch, args.channels, args.grid, args.dim, args.prototypes
    maps = torch.randn(b, c, g, g).relu().requires_grad_()
    gsp = GSP(c, d, num_prototypes=m, transport_ratio=args.mu, gamma=args.gamma, kcenter_init=False)
    with torch.no_grad():  # prototypes where the features are, as k-center would put them
        gsp.prototypes.copy_(gsp.proj(maps[:2].flatten(2).transpose(1, 2)).flatten(0, 1)[:m])
    linear = nn.Linear(c, d)
    params = [maps, *gsp.parameters(), *linear.parameters()]

    def run(fn):
        return time_fwd_bwd(fn, params, args.repeats, args.warmup)

    neck = {
        'GSP (exact solve, implicit backward)': run(lambda: gsp.pool_map_full(maps)[:2]),
        'avg pooling + Linear': run(lambda: (linear(maps.mean((2, 3))),)),
        'Linear per position + avg (1x1 conv, GAP)': run(
            lambda: (linear(maps.flatten(2).transpose(1, 2)).mean(1),)
        ),
        'GSP unrolled, 100 iterations, autograd': run(lambda: unrolled_gsp(gsp, maps)[:2]),
    }
    # The transport alone, from a fixed cost tensor: where the two GSP formulations differ.
    cost = (torch.rand(b, m, g * g) * 2).requires_grad_()

    def ours():
        residual, plan = partial_transport(cost, args.mu, args.gamma)
        return pooling_weights(residual, args.mu), attribute_vectors(plan, args.mu)

    def unrolled():
        residual, plan, _ = unrolled_transport(cost, args.mu, args.gamma, 100)
        return pooling_weights(residual, args.mu), attribute_vectors(plan, args.mu)

    transport = {
        'exact solve + implicit backward': time_fwd_bwd(ours, [cost], args.repeats, args.warmup),
        'unrolled 100 iterations + autograd': time_fwd_bwd(
            unrolled, [cost], args.repeats, args.warmup
        ),
    }
    with torch.no_grad():
        a, u = gsp.pool_map_full(maps), unrolled_gsp(gsp, maps)
        diff_pooled = (a.pooled - u[0]).abs().max().item()
        diff_weights = (a.weights - u[2]).abs().max().item()

    print(
        f'GSP benchmark: B={b}, C={c}, {g}x{g} grid, D={d}, m={m}, mu={args.mu}, '
        f'gamma={args.gamma}, float32, {torch.get_num_threads()} thread(s), forward+backward, '
        f'median of {args.repeats}\n'
    )
    gsp_time = neck['GSP (exact solve, implicit backward)']
    print('| neck | ms | GSP time / this |\n|---|---|---|')
    for name, seconds in neck.items():
        print(f'| {name} | {1000 * seconds:.1f} | {gsp_time / seconds:.2f} |')
    ours_time = transport['exact solve + implicit backward']
    print('\n| transport only (cost -> weights, attributes) | ms | this / exact |\n|---|---|---|')
    for name, seconds in transport.items():
        print(f'| {name} | {1000 * seconds:.2f} | {seconds / ours_time:.1f} |')
    print(
        f'\nmax |pooled - unrolled pooled| = {diff_pooled:.2e}, '
        f'max |w - unrolled w| = {diff_weights:.2e}'
    )


if __name__ == '__main__':
    main()
