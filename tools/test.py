"""Evaluate a checkpoint of any gpo_plugin (or mmpretrain) config with mmengine's Runner.

Usage:
    python tools/test.py CONFIG CHECKPOINT [--out results.json] [--work-dir DIR]
        [--data-root DIR] [--cfg-options k=v ...] [--launcher pytorch]
Prints the metrics (for image–text retrieval, the table in the papers' layout).
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from train import merge_common_args, parse_with_launcher  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test a checkpoint with mmengine.')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='write the metrics to this JSON file')
    parser.add_argument('--work-dir', help='where logs go')
    parser.add_argument(
        '--data-root', help='set `data_root` of the train/val/test datasets in one go'
    )
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override config fields'
    )
    return parse_with_launcher(parser, argv)


def print_metrics(metrics: dict) -> None:
    from gpo_plugin.evaluation import format_retrieval_table

    rsum = [k for k in metrics if k.endswith('rsum') and 'fold' not in k]
    if rsum:
        prefix = rsum[0][: -len('rsum')]
        folds = sorted(
            {k[len(prefix) + 4 :].split('_')[0] for k in metrics if k.startswith(prefix + 'fold')}
        )
        fold_size = int(folds[0]) if folds and folds[0].isdigit() else None
        print(format_retrieval_table(metrics, fold_size=fold_size, prefix=prefix))
    else:
        for key, value in metrics.items():
            print(f'{key}: {value}')


def main(argv=None) -> dict:
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'test.py: checkpoint {args.checkpoint} not found.')
    cfg = merge_common_args(Config.fromfile(args.config), args)
    cfg.load_from = args.checkpoint
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    if runner.rank == 0:
        print_metrics(metrics)
        if args.out:
            os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
            with open(args.out, 'w') as f:
                json.dump(metrics, f, indent=2)
            print(f'metrics written to {args.out}')
    return metrics


if __name__ == '__main__':
    main()
