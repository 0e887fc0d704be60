"""Forward+backward speed of GSP against average pooling + Linear and against the reference
formulation (100 unrolled fixed-point iterations, autograd through all of them), at ResNet-50
shapes, all interleaved in one process (``harness.py``). Prints markdown tables with ratios.

    python benchmarks/benchmark_gsp.py [--device cuda] [--batch 32 --channels 2048 --grid 7
                                        --dim 512 --prototypes 64 --repeats 20]
"""

from __future__ import annotations

import argparse

import torch
from harness import add_common_args, describe_run, setup, time_interleaved
from torch import nn

from gpo_plugin.models.necks import GSP, PoolingOutput
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
    add_common_args(parser, repeats=20, warmup=3)
    return parser.parse_args()


def pooled_and_attributes(out: PoolingOutput) -> tuple[torch.Tensor, torch.Tensor]:
    return out.pooled, out.attributes


def fwd_bwd(fn, probes: list[torch.Tensor]):
    """A run of forward + backward of sum(outputs * fixed random probes)."""

    def run() -> None:
        outputs = fn()
        sum((o * p).sum() for o, p in zip(outputs, probes, strict=True)).backward()

    return run


def probes_for(fn) -> list[torch.Tensor]:
    with torch.no_grad():
        return [torch.randn_like(o) for o in fn()]


def main() -> None:
    args = parse_args()
    device = setup(args)
    torch.manual_seed(0)
    b, c, g, d, m = args.batch, args.channels, args.grid, args.dim, args.prototypes
    maps = torch.randn(b, c, g, g, device=device).relu().requires_grad_()
    gsp = GSP(c, d, num_prototypes=m, transport_ratio=args.mu, gamma=args.gamma, kcenter_init=False)
    gsp.to(device)
    with torch.no_grad():  # prototypes where the features are, as k-center would put them
        gsp.prototypes.copy_(gsp.proj(maps[:2].flatten(2).transpose(1, 2)).flatten(0, 1)[:m])
    linear = nn.Linear(c, d).to(device)
    params = [maps, *gsp.parameters(), *linear.parameters()]

    def clear_grads() -> None:
        for t in params:
            t.grad = None

    necks = {
        'GSP (exact solve, implicit backward)': lambda: pooled_and_attributes(gsp.pool_map(maps)),
        'GSP unrolled, 100 iterations, autograd': lambda: unrolled_gsp(gsp, maps)[:2],
        'Linear per position + avg (1x1 conv, GAP)': lambda: (
            linear(maps.flatten(2).transpose(1, 2)).mean(1),
        ),
        'avg pooling + Linear': lambda: (linear(maps.mean((2, 3))),),
    }
    neck = time_interleaved(
        {name: fwd_bwd(fn, probes_for(fn)) for name, fn in necks.items()},
        args.repeats,
        args.warmup,
        device,
        before_each=clear_grads,
    )
    # The transport alone, from a fixed cost tensor: where the two GSP formulations differ.
    cost = (torch.rand(b, m, g * g, device=device) * 2).requires_grad_()

    def ours():
        residual, plan = partial_transport(cost, args.mu, args.gamma)
        return pooling_weights(residual, args.mu), attribute_vectors(plan, args.mu)

    def unrolled():
        residual, plan, _ = unrolled_transport(cost, args.mu, args.gamma, 100)
        return pooling_weights(residual, args.mu), attribute_vectors(plan, args.mu)

    transport = time_interleaved(
        {
            'exact solve + implicit backward': fwd_bwd(ours, probes_for(ours)),
            'unrolled 100 iterations + autograd': fwd_bwd(unrolled, probes_for(unrolled)),
        },
        args.repeats,
        args.warmup,
        device,
        before_each=lambda: setattr(cost, 'grad', None),
    )
    with torch.no_grad():
        a, u = gsp.pool_map(maps), unrolled_gsp(gsp, maps)
        diff_pooled = (a.pooled - u[0]).abs().max().item()
        diff_weights = (a.weights - u[2]).abs().max().item()

    shapes = (
        f'B={b}, C={c}, {g}x{g} grid, D={d}, m={m}, mu={args.mu}, gamma={args.gamma}, '
        'float32, forward + backward'
    )
    describe_run('GSP neck forward + backward', device, args, shapes)
    gsp_time = neck['GSP (exact solve, implicit backward)'].median
    print('| neck | time (ms) | this / GSP (exact) |\n|---|---|---|')
    for name, timing in neck.items():
        print(f'| {name} | {timing.cell()} | {timing.median / gsp_time:.2f} |')
    linear_time = neck['Linear per position + avg (1x1 conv, GAP)'].median
    print(
        f'\nGSP (exact) / Linear per position + avg = {gsp_time / linear_time:.3f} '
        f'(goal <= 1.15); GSP unrolled / GSP exact = '
        f'{neck["GSP unrolled, 100 iterations, autograd"].median / gsp_time:.3f} (goal >= 1)'
    )
    ours_time = transport['exact solve + implicit backward'].median
    print('\n| transport only (cost -> weights, attributes) | time (ms) | this / exact |')
    print('|---|---|---|')
    for name, timing in transport.items():
        print(f'| {name} | {timing.cell(digits=2)} | {timing.median / ours_time:.1f} |')
    print(
        f'\nmax |pooled - unrolled pooled| = {diff_pooled:.2e}, '
        f'max |w - unrolled w| = {diff_weights:.2e}'
    )


if __name__ == '__main__':
    main()
