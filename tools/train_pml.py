"""Train with pytorch-metric-learning's trainer, tester and hooks from a Runner config.

    python tools/train_pml.py configs/pml/digits_gsp.py [--work-dir DIR] [--resume]
        [--cfg-options train_cfg.max_epochs=3 ...]

The config is the one tools/train.py trains (configs/dml_*.py, or a configs/pml/ file that
inherits one and adds PML-only settings under ``pml``). Logs go through PML's record-keeper to
``{work_dir}/logs`` and ``{work_dir}/tensorboard``; models are saved to
``{work_dir}/saved_models`` at every validation, and a resumable training state every epoch;
``--resume`` continues from the newest complete state, exactly as if never interrupted. One
training per work dir (a second is refused); refuses to run with
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` set. Config keys read: docs/pml.md; guarantees:
docs/fault_tolerance.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import os.path as osp

import torch
from mmengine.config import DictAction


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--work-dir', default=None, help='defaults to work_dirs/pml/CONFIG_NAME')
    parser.add_argument('--resume', action='store_true', help='continue from the saved models')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    import gpo_plugin  # noqa: F401  (registers our modules)
    from gpo_plugin.pml.runner import build_session, load_config
    from gpo_plugin.utils.checkpoints import refuse_unsafe_env
    from gpo_plugin.utils.work_dir_lock import WorkDirLock

    refuse_unsafe_env('train_pml.py')
    if not logging.getLogger().handlers:  # PML's progress and our resume messages
        logging.basicConfig(level=logging.INFO, format='%(name)s %(levelname)s: %(message)s')
    cfg = load_config(args.config, args.cfg_options)
    name = osp.splitext(osp.basename(args.config))[0]
    work_dir = args.work_dir or cfg.get('work_dir') or osp.join('work_dirs', 'pml', name)
    with WorkDirLock(work_dir) as lock:  # one training per work dir
        if lock.stale_message():
            logging.getLogger('PML').warning(lock.stale_message())
        session = build_session(cfg, work_dir, resume=args.resume)
        accuracies = session.run()
    print(f'validation accuracies: {accuracies}')


if __name__ == '__main__':
    main()
