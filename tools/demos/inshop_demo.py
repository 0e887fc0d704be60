"""In-Shop configs end to end on a generated set in the In-Shop layout: writes the set
(``--generate`` alone only writes it), then trains and tests configs/dml_gsp_inshop.py and
configs/dml_avg_inshop.py from the command line (tools/train.py, tools/test.py) with tiny
images and a randomly initialised ResNet-50, and prints the query-vs-gallery table.

    python tools/demos/inshop_demo.py [--data-root data/demo/inshop] [--generate] [--epochs 1]
        [--work-dir outputs/inshop_demo]

A smoke run of the pipeline (layout, reader, protocol, configs), not the paper's numbers.
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import subprocess
import sys

from mmengine.fileio import load

from gpo_plugin.demo.inshop_data import make_inshop_demo_data

CONFIGS = (('GSP', 'configs/dml_gsp_inshop.py'), ('avg pooling', 'configs/dml_avg_inshop.py'))
COLUMNS = (
    ('MAP@R', 'mean_average_precision_at_r'),
    ('R-Prec', 'r_precision'),
    *((f'R@{k}', f'recall_at_{k}') for k in (1, 10, 20, 30, 40)),
)
SIZE = 64


def tiny_options(epochs: int) -> list[str]:
    """--cfg-options for small images, no pretrained weights, batches of 2 items x 4 images."""
    options = [
        'model.backbone.init_cfg=None',
        'train_dataloader.batch_size=8',
        'train_dataloader.sampler.batch_size=8',
        f'train_cfg.max_epochs={epochs}',
        f'train_cfg.val_interval={epochs}',
        f'train_dataloader.dataset.pipeline.1.scale={SIZE}',
    ]
    for loader in ('train', 'val', 'test'):
        options += [
            f'{loader}_dataloader.num_workers=0',
            f'{loader}_dataloader.persistent_workers=False',
        ]
    for loader in ('val', 'test'):
        options += [
            f'{loader}_dataloader.dataset.pipeline.1.scale={SIZE}',
            f'{loader}_dataloader.dataset.pipeline.2.crop_size={SIZE}',
        ]
    return options


def run(*args: str) -> None:
    subprocess.run([sys.executable, *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data-root', default='data/demo/inshop')
    parser.add_argument('--generate', action='store_true', help='only write the set')
    parser.add_argument('--epochs', type=int, default=1)
    parser.add_argument('--work-dir', default='outputs/inshop_demo')
    args = parser.parse_args()
    if args.generate or not osp.isdir(args.data_root):
        make_inshop_demo_data(args.data_root, num_train_items=24, num_test_items=24, size=SIZE)
        print(f'wrote the In-Shop layout to {args.data_root}')
        if args.generate:
            return
    rows = []
    for name, config in CONFIGS:
        work_dir = osp.join(args.work_dir, osp.basename(config)[:-3])
        common = ['--data-root', args.data_root, '--work-dir', work_dir]
        options = ['--cfg-options', *tiny_options(args.epochs)]
        run('tools/train.py', config, *common, *options)
        checkpoint = osp.join(work_dir, f'epoch_{args.epochs}.pth')
        metrics_file = osp.join(work_dir, 'test_metrics.json')
        run('tools/test.py', config, checkpoint, *common, '--out', metrics_file, *options)
        rows.append((name, load(metrics_file)['metrics']))
    print('| pooling | ' + ' | '.join(c for c, _ in COLUMNS) + ' |')
    print('|---|' + '---|' * len(COLUMNS))
    for name, metrics in rows:
        values = [metrics.get(f'dml/{key}') for _, key in COLUMNS]
        print(
            f'| {name} | '
            + ' | '.join('-' if v is None else f'{100 * v:.1f}' for v in values)
            + ' |'
        )


if __name__ == '__main__':
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    main()
