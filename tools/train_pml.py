"""Train with pytorch-metric-learning's trainer, tester and hooks from a Runner config.

    python tools/train_pml.py configs/pml/digits_gsp.py [--work-dir DIR] [--resume]
        [--cfg-options train_cfg.max_epochs=3 ...]

The config is the one tools/train.py trains (configs/dml_*.py, or a configs/pml/ file that
inherits one and adds PML-only settings under ``pml``). Logs go through PML's record-keeper to
``{work_dir}/logs`` and ``{work_dir}/tensorboard``; models are saved to
``{work_dir}/saved_models`` at every validation; ``--resume`` continues from the latest of
them. Config keys read: docs/pml.md.
"""

from __future__ import annotations

import argparse
import os
import os.path as osp

import torch
from mmengine.config import DictAction


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--work-dir', default=None, help='defaults to work_dirs/pml/CONFIG_NAME')
    parser.add_argument('--resume', action='store_true', help='continue from the saved models')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    import gpo_plugin  # noqa: F401  (registers our modules)
    from gpo_plugin.pml.runner import build_session, load_config

    cfg = load_config(args.config, args.cfg_options)
    name = osp.splitext(osp.basename(args.config))[0]
    work_dir = args.work_dir or cfg.get('work_dir') or osp.join('work_dirs', 'pml', name)
    session = build_session(cfg, work_dir, resume=args.resume)
    accuracies = session.run()
    print(f'validation accuracies: {accuracies}')


if __name__ == '__main__':
    main()
