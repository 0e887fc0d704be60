"""What ``tools/train.py`` and ``tools/test.py`` share: the usual mmpretrain/mmengine flags
(a config, ``--work-dir``, ``--cfg-options``, ``--launcher``) plus ``--data-root`` (sets
``data_root`` of every loader's dataset in one go) and ``--vocab`` (the BiGRU vocabulary, which
otherwise follows ``--data-root``), and the config they build: an unknown ``--cfg-options`` key is
an error, loaders get at most the usable cores as workers (:mod:`gpo_plugin.utils.config_setup`).
``--launcher pytorch`` (under ``torchrun``) also works without a GPU: the process group then uses
gloo (:func:`init_cpu_distributed`).
"""

from __future__ import annotations

import argparse
import datetime
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from gpo_plugin.utils.config_setup import check_cfg_options, fit_loaders, set_vocab_file

LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options train and test share."""
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument(
        '--data-root', help='set `data_root` of the train/val/test datasets in one go'
    )
    parser.add_argument(
        '--vocab',
        help="vocabulary JSON of the BiGRU configs (default: the config's `vocab_file`, "
        'which follows --data-root)',
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config fields, e.g. train_cfg.max_epochs=5',
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher',
    )
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def set_data_root(cfg: Config, data_root: str) -> None:
    """Point the dataset of every *_dataloader that has a data root at ``data_root``."""
    for key in LOADERS:
        dataset = (cfg.get(key) or {}).get('dataset')
        if dataset is not None and 'data_root' in dataset:
            dataset['data_root'] = data_root


def init_cpu_distributed(cfg: Config) -> None:
    """``--launcher pytorch`` without a GPU: start the gloo process group here.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` first, which fails on a machine
    without CUDA; with the group already initialised, the Runner skips it. DDP then wraps the
    model without ``device_ids`` (a CPU module takes none). torchrun sets RANK, WORLD_SIZE,
    MASTER_ADDR and MASTER_PORT, which ``init_method='env://'`` reads.
    """
    import torch
    import torch.distributed as dist

    if cfg.launcher != 'pytorch' or torch.cuda.is_available() or dist.is_initialized():
        return
    if 'WORLD_SIZE' not in os.environ:
        raise SystemExit(
            '--launcher pytorch: start the processes with torchrun (or tools/dist_train.sh), '
            'e.g. torchrun --nproc_per_node 2 tools/train.py CONFIG --launcher pytorch'
        )
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    timeout = cfg.env_cfg.dist_cfg.get('timeout')
    kwargs = {'timeout': datetime.timedelta(seconds=timeout)} if timeout else {}
    dist.init_process_group('gloo', init_method='env://', **kwargs)
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False),
    )
    if 'DistributedDataParallel' in str(wrapper.get('type', 'MMDistributedDataParallel')):
        wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def load_config(args: argparse.Namespace) -> Config:
    """The config with the shared options applied: launcher, --cfg-options, --data-root and
    the work dir (default ``work_dirs/<config name>``)."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    notes = []
    if args.cfg_options:
        notes += check_cfg_options(cfg, args.cfg_options)
        cfg.merge_from_dict(args.cfg_options)
    init_cpu_distributed(cfg)
    notes += set_vocab_file(
        cfg,
        vocab=getattr(args, 'vocab', None),
        data_root=args.data_root,
        options=args.cfg_options,
    )
    if args.data_root:
        set_data_root(cfg, args.data_root)
    notes += fit_loaders(cfg)
    args.setup_notes = notes
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def log_setup(runner: Runner, notes: list[str]) -> None:
    """The set-up lines of :func:`load_config` in the run's log (rank 0)."""
    for note in notes:
        runner.logger.info(note)
