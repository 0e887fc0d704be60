"""float32 matrix products at the package's shapes: PyTorch's default CPU route (MKL on x86)
against the oneDNN route of ``gpo_plugin.utils.onednn_linear`` (docs/benchmarks.md, "Matrix
products on CPU").

Each row times ``a @ b.T + bias`` both ways, interleaved (``harness.py``), and checks that the
results agree to float32 rounding. On CUDA the routing is off and this script has nothing
to compare.

    python benchmarks/benchmark_matmul.py [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
from harness import add_common_args, describe_run, setup, time_interleaved

from gpo_plugin.utils.onednn_linear import matmul_nt, onednn_enabled, onednn_routing

# key -> (what, (M, K, N)): rows, inner size, output columns.
SHAPES = {
    'region-fc': ('region fc (128 x 36 regions, 2048 -> 1024)', (4608, 2048, 1024)),
    'gru-input': ('GRU input projection (128 x 32 words, 300 -> 3 x 1024)', (4096, 300, 3072)),
    'gru-step': ('GRU recurrent step (128 rows, 1024 -> 3 x 1024)', (128, 1024, 3072)),
    'eval-scores': ('evaluation scores (256 images x 25000 captions)', (256, 1024, 25000)),
    'knn-block': ('symmetric k-NN block (2048 x 2048, 128-d + 2)', (2048, 130, 2048)),
}


def routed(onednn: bool, a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    with onednn_routing(onednn):
        return matmul_nt(a, b, bias)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--shapes', nargs='+', choices=tuple(SHAPES), default=list(SHAPES))
    add_common_args(parser, repeats=7)
    args = parser.parse_args()
    device = setup(args)
    if device.type != 'cpu':  # the routing is a CPU matter: nothing to compare on GPUs
        print('benchmark_matmul compares CPU kernels; skipped for', device)
        return
    describe_run(
        'float32 products, MKL (torch.addmm) against oneDNN (_linear_pointwise)',
        device,
        args,
        '; '.join(f'{SHAPES[key][0]}: (M, K, N) = {SHAPES[key][1]}' for key in args.shapes),
    )
    print(f'oneDNN routing on by default on this machine: {onednn_enabled()}\n')
    print('| product | MKL (ms) | oneDNN (ms) | MKL / oneDNN | GMAC/s oneDNN | max rel. diff |')
    print('|---|---|---|---|---|---|')
    generator = torch.Generator().manual_seed(0)
    for key in args.shapes:
        name, (m, k, n) = SHAPES[key]
        a = torch.randn(m, k, generator=generator)
        b = torch.randn(n, k, generator=generator)
        bias = torch.randn(n, generator=generator)
        operands = (a, b, bias)
        results = time_interleaved(
            {'mkl': partial(routed, False, *operands), 'onednn': partial(routed, True, *operands)},
            args.repeats,
            args.warmup,
        )
        mkl, onednn = results['mkl'], results['onednn']
        diff = (mkl.output - onednn.output).abs().max() / mkl.output.abs().max()
        rate = m * k * n / onednn.median / 1e9
        print(
            f'| {name} | {mkl.cell()} | {onednn.cell()} | {mkl.median / onednn.median:.2f}x | '
            f'{rate:.0f} | {diff:.1e} |'
        )


if __name__ == '__main__':
    main()
