"""``tools/check_dataset.py``: scan the datasets of a config up front, before a long run.

Building a dataset already checks its annotation files (and, for precomputed features, the
dtype and finiteness of every feature). This adds what is otherwise only found when a sample
is first read, possibly hours into training: every image file is read and decoded (empty,
undecodable and truncated images are reported, all of them, with their paths), and datasets
without image files have every sample prepared once.
"""

from __future__ import annotations

import argparse
import errno
from collections.abc import Sequence

import mmcv
import numpy as np
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

from gpo_plugin.registry import DATASETS

LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def check_image_file(path: str) -> str | None:
    """``None`` if ``path`` is a complete, decodable image, else what is wrong with it."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as error:
        if error.errno == errno.ELOOP:
            return 'is a symlink loop (a link that leads back to itself); point it at the image'
        return f'cannot be read ({error.strerror})'
    if not data:
        return 'is empty (0 bytes)'
    try:
        image = mmcv.imfrombytes(data, flag='color', backend='cv2')
    except Exception as error:  # cv2 raises bare assertion errors on some inputs
        image, reason = None, f': {error}'
    else:
        reason = ''
    # OpenCV (4.x) refuses truncated JPEGs too, so a cut-off file lands here as well.
    if image is None or image.size == 0:
        return f'cannot be decoded as an image (corrupt or truncated){reason}'
    return None


def scan_dataset(dataset, log=print) -> list[str]:
    """Problems of one built dataset, one line each (empty when it is sound)."""
    from gpo_plugin.datasets import PrecompCaptionDataset

    problems = []
    if isinstance(dataset, PrecompCaptionDataset):
        # Building it read every caption and id and scanned every feature (check_finite).
        log(f'  {type(dataset).__name__}: {len(dataset)} samples, files checked when opened')
        return problems
    for idx in range(len(dataset)):
        info = dataset.get_data_info(idx)
        if 'img_path' in info:
            problem = check_image_file(info['img_path'])
            if problem:
                problems.append(f'{info["img_path"]} {problem}')
            continue
        try:
            sample = dataset[idx]
        except Exception as error:
            problems.append(f'sample {idx}: {type(error).__name__}: {error}')
            continue
        inputs = sample.get('inputs') if isinstance(sample, dict) else None
        if hasattr(inputs, 'dtype') and not np.isfinite(np.asarray(inputs, dtype=float)).all():
            problems.append(f'sample {idx}: non-finite input values')
    log(f'  {type(dataset).__name__}: {len(dataset)} samples, {len(problems)} problem(s)')
    return problems


def construction_problems(key: str, error: Exception) -> list[str]:
    """Problem lines for a dataset that could not be built: every bad file the error lists
    (``error.problems``, set by the readers' image checks), else its message."""
    while error.__cause__ is not None and not hasattr(error, 'problems'):
        error = error.__cause__  # registries re-raise build errors wrapped
    listed = getattr(error, 'problems', None)
    if listed:
        return list(listed)
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ''
    return [f'{key}: the dataset cannot be built: {type(error).__name__}: {first_line}']


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description='Check every sample of the datasets of a config.')
    p.add_argument('config')
    p.add_argument(
        '--loaders',
        nargs='+',
        default=list(LOADERS),
        choices=LOADERS,
        help='which dataloaders to check (default: all three)',
    )
    p.add_argument('--data-root', help='set `data_root` of the datasets in one go')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config fields')
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Scan the datasets; print each problem; return 1 if there were any, else 0."""
    from gpo_plugin.apis.cli import set_data_root

    args = parser().parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.data_root:
        set_data_root(cfg, args.data_root)
    init_default_scope(cfg.get('default_scope', 'gpo_plugin'))
    problems, seen = [], []
    for key in args.loaders:
        dataset_cfg = (cfg.get(key) or {}).get('dataset')
        if dataset_cfg is None or dataset_cfg in seen:
            continue
        seen.append(dataset_cfg)
        print(f'{key}:')
        try:  # annotation files are checked while building
            dataset = DATASETS.build(dataset_cfg)
        except Exception as error:  # report it and go on with the other datasets
            problems += construction_problems(key, error)
            continue
        problems += scan_dataset(dataset)
    for line in problems:
        print(f'  PROBLEM: {line}')
    print(f'{len(problems)} problem(s) found.' if problems else 'All samples are readable.')
    return 1 if problems else 0
