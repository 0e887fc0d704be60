"""GSP vs average pooling on scikit-learn's digits through pytorch-metric-learning's trainer
and tester (train on digits 0-4, retrieve among the unseen digits 5-9), clean and cluttered,
configured by configs/pml/digits_*.py (the Runner configs configs/dml_*_digits*.py plus PML's
own settings). One seed; ``make demo-dml`` has the same comparison
with mmengine's Runner over several seeds.

    python tools/pml_digits_demo.py [--work-dir outputs/pml_digits] [--epochs 12]
        [--settings clean clutter]
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import shutil
import time

import torch

CONFIGS = {
    'clean': (
        ('GSP + zero-shot', 'configs/pml/digits_gsp.py'),
        ('avg pooling', 'configs/pml/digits_avg.py'),
    ),
    'clutter': (
        ('GSP + zero-shot', 'configs/pml/digits_clutter_gsp.py'),
        ('avg pooling', 'configs/pml/digits_clutter_avg.py'),
    ),
}
COLUMNS = (
    ('MAP@R', 'mean_average_precision_at_r_level0'),
    ('P@1', 'precision_at_1_level0'),
    ('R-Prec', 'r_precision_level0'),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='outputs/pml_digits')
    parser.add_argument('--epochs', type=int, default=None, help='override train_cfg.max_epochs')
    parser.add_argument(
        '--settings', nargs='+', choices=tuple(CONFIGS), default=list(CONFIGS), help='which data'
    )
    return parser.parse_args()


def run(config: str, work_dir: str, epochs: int | None) -> tuple[dict, float]:
    from gpo_plugin.pml.runner import build_session, load_config

    options = {}
    if epochs is not None:
        options = {
            'train_cfg.max_epochs': epochs,
            'train_cfg.val_interval': epochs,
            'param_scheduler': [dict(type='CosineAnnealingLR', T_max=epochs, by_epoch=True)],
        }
    shutil.rmtree(work_dir, ignore_errors=True)  # a fresh run, not a resume
    session = build_session(load_config(config, options), work_dir)
    start = time.time()
    accuracies = session.run()
    return accuracies, time.time() - start


def main() -> None:
    args = parse_args()
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    import logging

    logging.getLogger('PML').setLevel(logging.WARNING)
    rows = []
    for setting in args.settings:
        for name, config in CONFIGS[setting]:
            work_dir = osp.join(args.work_dir, setting, name.split()[0].lower())
            accuracies, seconds = run(config, work_dir, args.epochs)
            cells = ' | '.join(f'{100 * accuracies[key]:.1f}' for _, key in COLUMNS)
            rows.append(f'| {setting} | {name} | {cells} | {seconds:.0f} |')
    header = (
        '| digits | pooling | ' + ' | '.join(c for c, _ in COLUMNS) + ' | train + val time (s) |'
    )
    table = '\n'.join([header, '|' + '---|' * (len(COLUMNS) + 3), *rows])
    with open(osp.join(args.work_dir, 'results.md'), 'w') as handle:
        handle.write(table + '\n')
    print(f'\nDigits 5-9 (unseen classes), PML GlobalEmbeddingSpaceTester, %:\n{table}')
    pictures = osp.join(args.work_dir, '{setting}', 'gsp', 'pooling_weights')
    print(f'GSP pooling weights per epoch: {pictures}')


if __name__ == '__main__':
    main()
