"""What ``tools/train.py`` and ``tools/test.py`` do, as functions (the tools are thin wrappers).

Both take the usual mmpretrain/mmengine flags: a config, ``--work-dir``, ``--cfg-options``,
``--launcher``, plus ``--data-root`` (sets ``data_root`` of every loader's dataset in one go)
and ``--vocab`` (the BiGRU vocabulary, which otherwise follows ``--data-root``); an unknown
``--cfg-options`` key is an error, loaders get at most the usable cores as workers
(:mod:`gpo_plugin.apis.config_setup`). ``train`` adds ``--resume [CKPT]``, ``--amp
[--amp-dtype]``, ``--auto-scale-lr`` and ``--tensorboard``, and logs the global batch; ``test`` a
checkpoint, ``--out`` and ``--non-strict``. Both refuse to run with
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` set; ``--resume`` skips broken checkpoints, ``test`` refuses a
checkpoint of another model. ``--launcher pytorch`` (under ``torchrun``) also works without a GPU:
the process group then uses gloo (:func:`init_cpu_distributed`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import os.path as osp
from collections.abc import Sequence

from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner

from gpo_plugin.apis.config_setup import check_cfg_options, fit_loaders, set_vocab_file
from gpo_plugin.utils.checkpoints import (
    check_state_dict_matches,
    refuse_unsafe_env,
    resolve_resume,
    safe_torch_load,
)
from gpo_plugin.utils.work_dir_lock import WorkDirLock, is_rank_zero

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


def train_parser() -> argparse.ArgumentParser:
    parser = add_common_args(argparse.ArgumentParser(description='Train a model with mmengine.'))
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from CKPT, or from the latest checkpoint of the work dir',
    )
    parser.add_argument(
        '--amp',
        action='store_true',
        help="mixed precision: on a GPU mmengine's AmpOptimWrapper (float16 with dynamic loss "
        'scaling, or --amp-dtype bfloat16); without a GPU bfloat16 autocast on the CPU, no '
        'loss scaling (gpo_plugin.CPUBf16AmpOptimWrapper)',
    )
    parser.add_argument(
        '--amp-dtype',
        choices=['float16', 'bfloat16'],
        default=None,
        help='autocast type with --amp (default: float16 on a GPU, bfloat16 on the CPU, '
        'which supports only bfloat16)',
    )
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the LR by total batch / auto_scale_lr.base_batch_size',
    )
    parser.add_argument(
        '--tensorboard',
        action='store_true',
        help="also log scalars (and VSE's pooling plots) to TensorBoard under the work dir",
    )
    return parser


def test_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='Test a checkpoint with mmengine.')
    add_common_args(parser)
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='write the metrics to this JSON file')
    parser.add_argument(
        '--non-strict',
        action='store_true',
        help="load a checkpoint whose keys or shapes differ from the config's model",
    )
    add_evaluation_output_args(parser)
    return parser


# ---- tools/test.py: evaluation outputs (--out provenance, --save-sims, --save-ranks, CxC,
# --tie-rule); the logic lives in gpo_plugin/apis/evaluation_outputs.py. ----
def add_evaluation_output_args(parser: argparse.ArgumentParser) -> None:
    from gpo_plugin.evaluation.functional import TIE_RULES

    group = parser.add_argument_group('image-text retrieval outputs')
    group.add_argument(
        '--tie-rule',
        choices=TIE_RULES,
        help="how ties with the ground truth rank (default: the config's, else 'published', "
        "the published evaluation's argsort order)",
    )
    group.add_argument(
        '--save-sims',
        metavar='FILE.npz',
        help='write the similarity matrix, the embeddings and the caption-to-image rows (npz)',
    )
    group.add_argument(
        '--save-ranks',
        metavar='FILE.npz',
        help='write the 0-based rank of every query both ways and its top-10 ids (npz)',
    )
    group.add_argument(
        '--cxc-annots',
        metavar='DIR',
        help='also report the CxC recalls (folder with testall_ids.txt, testall_capids.txt, '
        'cxc_it.json, cxc_i2i.json, cxc_t2t.json)',
    )


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


def apply_train_args(cfg: Config, args: argparse.Namespace) -> Config:
    """--amp, --resume and --auto-scale-lr."""
    if args.amp:
        set_amp(cfg, args.amp_dtype)
    elif args.amp_dtype:
        raise SystemExit('--amp-dtype needs --amp.')
    if args.resume == 'auto':
        # The newest loadable checkpoint (a broken `last_checkpoint` is skipped with a warning).
        latest = resolve_resume(cfg.work_dir)
        cfg.resume, cfg.load_from = latest is not None, latest
        if latest is None:
            args.setup_notes.append(
                f'--resume: no checkpoint in {cfg.work_dir} yet; training starts from scratch.'
            )
    elif args.resume is not None:
        safe_torch_load(args.resume, map_location='cpu', mmap=True)  # names a broken file
        cfg.resume, cfg.load_from = True, args.resume
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise ValueError(
                f'--auto-scale-lr: {args.config} has no '
                '`auto_scale_lr = dict(base_batch_size=...)`.'
            )
        cfg.auto_scale_lr.enable = True
    if args.tensorboard:
        backends = cfg.setdefault('visualizer', dict(type='mmengine.Visualizer'))
        backends = backends.setdefault('vis_backends', [dict(type='LocalVisBackend')])
        if not any('Tensorboard' in str(b.get('type')) for b in backends):
            backends.append(dict(type='TensorboardVisBackend'))
    return cfg


def set_amp(cfg: Config, dtype: str | None) -> None:
    """Mixed precision: mmengine's ``AmpOptimWrapper`` on a GPU (``dtype`` float16 by default,
    dynamic loss scaling), ``CPUBf16AmpOptimWrapper`` (bfloat16 autocast) without one."""
    import torch

    if torch.cuda.is_available():
        if dtype == 'bfloat16' and not torch.cuda.is_bf16_supported():
            raise SystemExit('--amp-dtype bfloat16: this GPU has no bfloat16; use float16.')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        cfg.optim_wrapper.dtype = dtype or 'float16'
        return
    if dtype == 'float16':
        raise SystemExit(
            '--amp-dtype float16: no GPU is visible, and CPU autocast supports bfloat16 only; '
            'drop --amp-dtype (bfloat16 on the CPU) or run on a GPU.'
        )
    cfg.optim_wrapper.type = 'gpo_plugin.CPUBf16AmpOptimWrapper'
    cfg.optim_wrapper.pop('loss_scale', None)
    cfg.optim_wrapper.dtype = 'bfloat16'


def train(argv: Sequence[str] | None = None) -> Runner:
    """``tools/train.py``: build the Runner from the config and train."""
    args = train_parser().parse_args(argv)
    refuse_unsafe_env('train.py')
    cfg = load_config(args)
    with WorkDirLock(cfg.work_dir, enabled=is_rank_zero()) as lock:  # one training per dir
        if lock.stale_message():
            print_log(lock.stale_message(), logger='current', level=logging.WARNING)
        runner = Runner.from_cfg(apply_train_args(cfg, args))
        log_setup(runner, args.setup_notes + [global_batch_line(runner)])
        runner.train()
    return runner


def log_setup(runner: Runner, notes: list[str]) -> None:
    """The set-up lines of :func:`load_config` in the run's log (rank 0)."""
    for note in notes:
        runner.logger.info(note)


def global_batch_line(runner: Runner) -> str:
    """How many pairs one optimisation step sees, and whether the loss sees all of them."""
    from mmengine.model import is_model_wrapper

    batch = runner.cfg.train_dataloader.get('batch_size', 1)
    world = runner.world_size
    line = f'global batch: {world} process(es) x batch_size {batch} = {world * batch}'
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    gathers = getattr(getattr(model, 'head', None), 'global_batch', None)
    if gathers is None:
        return line
    if world == 1 or gathers:
        how = ' (embeddings gathered across ranks)' if world > 1 else ''
        return line + f'; the loss sees all {world * batch}{how}'
    return line + f"; the loss sees each rank's {batch} (head.global_batch=False)"


def test(argv: Sequence[str] | None = None) -> dict:
    """``tools/test.py``: evaluate a checkpoint, print the metrics (and write ``--out``)."""
    args = test_parser().parse_args(argv)
    refuse_unsafe_env('test.py')
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'test.py: checkpoint {args.checkpoint} not found.')
    from gpo_plugin.apis import evaluation_outputs as outputs

    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    runner = Runner.from_cfg(cfg)
    log_setup(runner, args.setup_notes)
    if not args.non_strict:
        check_state_dict_matches(runner.model, args.checkpoint)
    retrieval = outputs.prepare_retrieval_metrics(runner, args.tie_rule)
    metrics = runner.test()
    if runner.rank == 0:
        metrics = outputs.add_cxc(metrics, retrieval, args.cxc_annots)
        print_metrics(metrics, retrieval)
        outputs.save_arrays(retrieval, args.save_sims, args.save_ranks)
        if args.out:
            record = outputs.provenance(cfg, args, retrieval)
            os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
            with open(args.out, 'w') as f:
                json.dump(dict(metrics=metrics, provenance=record), f, indent=2)
            print(f'metrics and provenance written to {args.out}')
    return metrics


def print_metrics(metrics: dict, retrieval=None) -> None:
    """Image–text retrieval metrics as the papers' table, once (the metric's own log of it is
    turned off), with every fold, the tie rule and the protocols run; anything else one per
    line."""
    from gpo_plugin.apis.evaluation_outputs import retrieval_table

    table, shown = retrieval_table(metrics, retrieval)
    if table:
        print(table)
    for key, value in metrics.items():
        if key not in shown:
            print(f'{key}: {value}')
