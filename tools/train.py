"""Train any gpo_plugin (or mmpretrain) config with mmengine's Runner.

Usage:
    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--data-root DIR] [--cfg-options k=v ...] [--launcher pytorch]
Multi-GPU: torchrun --nproc_per_node=N tools/train.py CONFIG --launcher pytorch
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model with mmengine.')
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from CKPT, or from the latest checkpoint of the work dir',
    )
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the LR by total batch / auto_scale_lr.base_batch_size',
    )
    parser.add_argument(
        '--data-root', help='set `data_root` of the train/val/test datasets in one go'
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config fields, e.g. train_cfg.max_epochs=5',
    )
    return parse_with_launcher(parser, argv)


def parse_with_launcher(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Add the distributed-launch options (shared with test.py) and parse ``argv``."""
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher',
    )
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def set_data_root(cfg: Config, data_root: str) -> None:
    """Point the dataset of every *_dataloader that has a data root at ``data_root``."""
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = (cfg.get(key) or {}).get('dataset')
        if dataset is not None and 'data_root' in dataset:
            dataset['data_root'] = data_root


def merge_common_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the options train.py and test.py share: launcher, --cfg-options, --data-root
    and the work dir (default ``work_dirs/<config name>``)."""
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.data_root:
        set_data_root(cfg, args.data_root)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    merge_common_args(cfg, args)
    if args.amp:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit(
                "--amp: mmengine's AmpOptimWrapper needs a GPU; none is visible. "
                'Drop --amp to train in float32 on the CPU.'
            )
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise ValueError(
                f'--auto-scale-lr: {args.config} has no '
                '`auto_scale_lr = dict(base_batch_size=...)`.'
            )
        cfg.auto_scale_lr.enable = True
    return cfg


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = merge_args(Config.fromfile(args.config), args)
    runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
