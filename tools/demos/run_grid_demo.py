"""The grid-feature demo: real photos and real weights -> train GPO and average pooling.

Creates the data (scikit-image's sample photos + a generated Karpathy JSON,
``gpo_plugin.demo.ensure_grid_demo_data``) if missing, trains ``configs/vse_gpo_demo_grid.py``
(EfficientNet-Lite0 grid features at 224 px + MiniLM, GPO) and the average-pooling
baseline ``configs/vse_avgpool_demo_grid.py`` on the Runner, and prints both retrieval
tables on the 23 whole photos and on a small part of each (the training images are crops
of them; docs/vse.md).

Usage:
    python tools/demos/run_grid_demo.py [--no-compare] [--work-dir work_dirs/vse_grid_demo]
        [--data-dir data/demo/grid] [--epochs 3]
"""

from __future__ import annotations

import argparse
import copy
import os
import os.path as osp
import time

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('HF_HUB_OFFLINE', '1')

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner, TestLoop  # noqa: E402

from gpo_plugin.demo import ensure_grid_demo_data  # noqa: E402

torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))
CONFIGS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')


def run(config: str, work_dir: str, data_dir: str, epochs: int | None) -> dict[str, dict]:
    """Train, then test on the whole photos ('test') and on their parts ('dev')."""
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    cfg.work_dir = work_dir
    for key in ('train_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = data_dir
    if epochs is not None:
        cfg.train_cfg.max_epochs = epochs
        cfg.default_hooks.checkpoint.interval = epochs
    runner = Runner.from_cfg(cfg)
    runner.train()
    results = {'test': runner.test()}
    parts = copy.deepcopy(cfg.test_dataloader)
    parts.dataset.split = 'dev'
    results['dev'] = TestLoop(runner, parts, cfg.test_evaluator).run()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description='Train and evaluate the grid-feature demo.')
    parser.add_argument('--work-dir', default='work_dirs/vse_grid_demo')
    parser.add_argument('--data-dir', default='data/demo/grid')
    parser.add_argument('--epochs', type=int, default=None, help='override max_epochs (3)')
    parser.add_argument(
        '--no-compare',
        dest='compare',
        action='store_false',
        help='skip the average-pooling baseline (trained by default)',
    )
    args = parser.parse_args()
    from gpo_plugin.evaluation import format_retrieval_table

    start = time.time()
    ensure_grid_demo_data(args.data_dir)
    runs = [('GPO', 'vse_gpo_demo_grid.py')]
    if args.compare:
        runs.append(('AvgPooling', 'vse_avgpool_demo_grid.py'))
    results = {}
    for name, config in runs:
        results[name] = run(
            config, osp.join(args.work_dir, name.lower()), args.data_dir, args.epochs
        )
    views = (('test', '23 whole photos'), ('dev', '23 bottom-centre parts (side 0.45)'))
    for name, by_split in results.items():
        for split, label in views:
            print(f'\n== {name} (EfficientNet-Lite0 grid + MiniLM), {label} ==')
            print(format_retrieval_table(by_split[split], prefix='retrieval/'))
    if args.compare:
        print('\nrSum (115 captions each):    whole photos   parts')
        for name, by_split in results.items():
            print(
                f'  {name:<11}               {by_split["test"]["retrieval/rsum"]:6.1f}  '
                f'{by_split["dev"]["retrieval/rsum"]:6.1f}'
            )
    print(f'\n[demo-grid] done in {time.time() - start:.0f} s; checkpoints under {args.work_dir}')


if __name__ == '__main__':
    main()
