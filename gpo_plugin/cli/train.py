"""``tools/train.py`` as a function: the shared flags (:mod:`gpo_plugin.cli.runner_config`) plus
``--resume [CKPT]`` (broken checkpoints skipped), ``--amp [--amp-dtype]``, ``--auto-scale-lr`` and
``--tensorboard``; logs the global batch, holds one lock per work dir and refuses to run with
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` set.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.runner import Runner

from gpo_plugin.cli.runner_config import add_common_args, load_config, log_setup
from gpo_plugin.utils.checkpoints import refuse_unsafe_env, resolve_resume, safe_torch_load
from gpo_plugin.utils.work_dir_lock import WorkDirLock, is_rank_zero


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


def main(argv: Sequence[str] | None = None) -> Runner:
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
