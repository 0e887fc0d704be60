"""Forward+backward time of GPO against the published GPO formulation and baseline poolers.

All methods run interleaved in one process on the same inputs (``harness.py``); the table
reports the median and spread of repeated runs, the ratio to GPO, and the largest
difference of each GPO formulation's output from GPO's.

    python benchmarks/benchmark_pooling.py [--device cuda] [--repeats 5] [--shapes region text]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from harness import add_common_args, describe_run, setup, time_interleaved

from gpo_plugin.models.necks import GPO, AvgPooling, KMaxPooling, MaxPooling

from references.gpo import batched_reference_gpo, per_sample_gpo, published_gpo

# name -> (B, L, D, smallest set size): region sets shrink under 20 % region dropout,
# captions vary in length, grids lose vectors under size augmentation.
SHAPES = {
    'region': (128, 36, 1024, 20),
    'text': (128, 32, 1024, 8),
    'grid': (32, 256, 2048, 160),
}
BASELINE = 'published VSE∞ GPO class (packed BiGRU per batch, -10000 padding, sort on dim 1)'


def pooling_methods(gpo: GPO, gpo_packed: GPO) -> dict[str, Callable]:
    """name -> pool(features, lengths) returning the pooled (B, D)."""
    return {
        'GPO': lambda x, n: gpo.pool(x, n).pooled,
        "GPO, gru_impl='packed' (nn.GRU)": lambda x, n: gpo_packed.pool(x, n).pooled,
        BASELINE: lambda x, n: published_gpo(gpo, x, n)[0],
        'BiGRU per sample in one batch, -inf padding': lambda x, n: batched_reference_gpo(
            gpo, x, n
        )[0],
        'Python loop per sample': lambda x, n: per_sample_gpo(gpo, x, n)[0],
        'average': lambda x, n: AvgPooling().pool(x, n).pooled,
        'max': lambda x, n: MaxPooling().pool(x, n).pooled,
        'K-max (K=20)': lambda x, n: KMaxPooling(k=20).pool(x, n).pooled,
    }


def fwd_bwd(pool: Callable, features: torch.Tensor, lengths, upstream) -> Callable:
    """A zero-argument run of forward + backward through ``pool``; returns the output."""

    def run() -> torch.Tensor:
        x = features.detach().requires_grad_(True)
        pooled = pool(x, lengths)
        (pooled * upstream).sum().backward()
        return pooled.detach()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--shapes', nargs='+', choices=tuple(SHAPES), default=list(SHAPES))
    parser.add_argument(
        '--with-loop', action='store_true', help='also time the per-sample Python loop'
    )
    add_common_args(parser, repeats=7)
    args = parser.parse_args()
    device = setup(args)
    torch.manual_seed(0)
    gpo = GPO().to(device)
    gpo_packed = GPO(gru_impl='packed').to(device)
    gpo_packed.load_state_dict(gpo.state_dict())
    shapes = '; '.join(
        f'{name} (B, L, D) = {shape[:3]}, set sizes {shape[3]}..{shape[1]}'
        for name, shape in SHAPES.items()
        if name in args.shapes
    )
    describe_run('GPO forward + backward', device, args, shapes)
    print('| shape | method | time (ms) | time / GPO | max abs diff to GPO |')
    print('|---|---|---|---|---|')
    methods = pooling_methods(gpo, gpo_packed)
    for name in args.shapes:
        batch, set_len, dim, smallest = SHAPES[name]
        features = torch.randn(batch, set_len, dim, device=device)
        lengths = torch.randint(smallest, set_len + 1, (batch,), device=device)
        lengths[0] = set_len
        upstream = torch.randn(batch, dim, device=device)
        runs = {m: fwd_bwd(pool, features, lengths, upstream) for m, pool in methods.items()}
        if not args.with_loop or name == 'grid':  # seconds per run, and nothing new
            runs.pop('Python loop per sample')
        results = time_interleaved(runs, args.repeats, args.warmup, device)
        ours = results['GPO']
        for method, timing in results.items():
            same_function = method.startswith(('GPO', BASELINE, 'BiGRU', 'Python'))
            diff = (timing.output - ours.output).abs().max().item() if same_function else None
            print(
                f'| {name} {tuple(features.shape)} | {method} | {timing.cell()} | '
                f'{timing.median / ours.median:.2f}x | '
                f'{"-" if diff is None else f"{diff:.1e}"} |',
                flush=True,
            )


if __name__ == '__main__':
    main()
