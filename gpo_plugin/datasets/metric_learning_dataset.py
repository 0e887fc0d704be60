"""Class-disjoint metric-learning splits and the MLRC 4-fold cross-validation (docs/dml.md#data)."""

from __future__ import annotations

import errno
import os
import os.path as osp
from abc import abstractmethod

import numpy as np
from mmpretrain.datasets import BaseDataset

SPLITS = ('train', 'test')


def fold_classes(train_classes: list[int], fold: int, num_folds: int = 4) -> tuple[list, list]:
    """MLRC class-disjoint cross-validation: the sorted training classes cut into ``num_folds``
    contiguous parts; fold k holds out part k for validation and trains on the others.

    Returns:
        (training classes, held-out classes) of this fold.
    """
    if not 0 <= fold < num_folds:
        raise ValueError(f'fold must lie in [0, {num_folds}), got {fold}.')
    parts = np.array_split(np.array(sorted(train_classes)), num_folds)
    held_out = parts[fold].tolist()
    kept = [c for i, part in enumerate(parts) if i != fold for c in part.tolist()]
    return kept, held_out


class MetricLearningDataset(BaseDataset):
    """Base of the CUB / Cars196 / SOP readers: class-disjoint train/test classes, optional MLRC
    fold, labels remapped to 0..K-1 over the selected classes (sorted by original id).

    Subclasses implement :meth:`read_split` (records of one official split) and set ``LAYOUT``
    (printed in every file error).

    Args:
        data_root: dataset root directory (see the subclass's layout).
        split: ``'train'`` (training classes) or ``'test'`` (test classes).
        fold: None, or the MLRC cross-validation fold (0..num_folds-1) within the training
            classes; needs ``split='train'``.
        fold_role: with ``fold``: ``'train'`` (the other folds' classes) or ``'val'`` (this
            fold's held-out classes).
        num_folds: number of folds. Defaults to 4.
        pipeline, test_mode, lazy_init, ...: as mmpretrain's ``BaseDataset``.

    Each sample: ``img_path``, ``gt_label`` (0..K-1) and ``class_id`` (the original id).
    """

    LAYOUT = ''

    def __init__(
        self,
        data_root: str,
        split: str = 'train',
        fold: int | None = None,
        fold_role: str = 'train',
        num_folds: int = 4,
        pipeline=(),
        test_mode: bool | None = None,
        **kwargs,
    ) -> None:
        name = type(self).__name__
        if split not in SPLITS:
            raise ValueError(f"{name}: split must be 'train' or 'test', got {split!r}.")
        if fold is not None and split != 'train':
            raise ValueError(
                f"{name}: MLRC folds split the training classes; use split='train' "
                f'with fold={fold}.'
            )
        if fold_role not in ('train', 'val'):
            raise ValueError(f"{name}: fold_role must be 'train' or 'val', got {fold_role!r}.")
        if not osp.isdir(data_root):
            raise FileNotFoundError(
                f'{name}: data_root {data_root!r} is not a directory. '
                f'Expected layout:\n{self.LAYOUT}'
            )
        self.split, self.fold, self.fold_role, self.num_folds = split, fold, fold_role, num_folds
        if test_mode is None:
            test_mode = split == 'test' or (fold is not None and fold_role == 'val')
        super().__init__(
            ann_file='', data_root=data_root, pipeline=pipeline, test_mode=test_mode, **kwargs
        )

    @abstractmethod
    def read_split(self, split: str) -> list[tuple[str, int]]:
        """(path relative to data_root, original class id) of every image of ``split``."""

    def load_data_list(self) -> list[dict]:
        records = self.read_split(self.split)
        classes = sorted({c for _, c in records})
        if self.fold is not None:
            kept, held_out = fold_classes(classes, self.fold, self.num_folds)
            classes = held_out if self.fold_role == 'val' else kept
        index = {c: i for i, c in enumerate(classes)}
        self._metainfo['classes'] = tuple(str(c) for c in classes)
        return [
            dict(img_path=osp.join(self.data_root, path), gt_label=index[c], class_id=c)
            for path, c in records
            if c in index
        ]

    # -- helpers for readers --------------------------------------------------------------------

    def require_file(self, relative: str) -> str:
        path = osp.join(self.data_root, relative)
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'{type(self).__name__}: missing {path}. Expected layout under '
                f'data_root:\n{self.LAYOUT}'
            )
        return path

    def check_images(self, relative_paths: list[str]) -> None:
        """Every listed image exists and is not empty (a cheap ``stat``; decoding is checked
        on first use, and for all images up front by ``tools/check_dataset.py``)."""
        missing, empty, loops = [], [], []
        for p in relative_paths:
            try:
                if os.stat(osp.join(self.data_root, p)).st_size == 0:
                    empty.append(p)
            except OSError as error:
                (loops if error.errno == errno.ELOOP else missing).append(p)
        # Every bad path rides on the error (``problems``) for tools/check_dataset.py.
        problems = [
            f'{osp.join(self.data_root, p)} {what}'
            for group, what in (
                (missing, 'is missing'),
                (loops, 'is a symlink loop'),
                (empty, 'is empty (0 bytes)'),
            )
            for p in group
        ]
        if missing or loops:
            counts = [f'{len(missing)} missing'] if missing else []
            if loops:
                counts.append(f'{len(loops)} symlink loop(s) (links leading back to themselves)')
            error = FileNotFoundError(
                f'{type(self).__name__}: image(s) listed in the annotations: '
                f'{" and ".join(counts)}, e.g. {problems[0]}. Expected layout under '
                f'data_root:\n{self.LAYOUT}'
            )
        elif empty:
            error = ValueError(
                f'{type(self).__name__}: {len(empty)} image file(s) are empty (0 bytes), e.g. '
                f'{osp.join(self.data_root, empty[0])}; restore them from the dataset archive.'
            )
        else:
            return
        error.problems = problems
        raise error

    def prepare_data(self, idx: int):
        """The sample through the pipeline; a failure (an unreadable or corrupt image) names
        the image file."""
        try:
            return super().prepare_data(idx)
        except Exception as error:
            path = self.get_data_info(idx).get('img_path', f'sample {idx}')
            raise RuntimeError(
                f'{type(self).__name__}: cannot load {path}: {type(error).__name__}: {error}. '
                'Scan the whole dataset with tools/check_dataset.py CONFIG.'
            ) from error

    def no_duplicates(self, relative: str, rows, expected: str) -> None:
        """Refuse a repeated first field (an image id) in the rows of ``read_table``."""
        seen: dict[str, int] = {}
        for line_no, fields in rows:
            if fields[0] in seen:
                raise self.malformed(
                    osp.join(self.data_root, relative),
                    line_no,
                    ' '.join(fields),
                    f'{expected} with a unique image_id ({fields[0]} is already on line '
                    f'{seen[fields[0]]})',
                )
            seen[fields[0]] = line_no

    def malformed(self, path: str, line_no: int, line: str, expected: str) -> ValueError:
        return ValueError(
            f'{type(self).__name__}: malformed line {line_no} of {path}: '
            f'{line.strip()!r}; expected {expected}.'
        )

    def read_table(
        self, relative: str, columns: int, expected: str, header: bool = False
    ) -> list[tuple[int, list[str]]]:
        """(line number, fields) of whitespace-separated rows with exactly ``columns`` fields."""
        path = self.require_file(relative)
        rows = []
        with open(path) as handle:
            for line_no, line in enumerate(handle, start=1):
                if (header and line_no == 1) or not line.strip():
                    continue
                fields = line.split()
                if len(fields) != columns:
                    raise self.malformed(path, line_no, line, expected)
                rows.append((line_no, fields))
        if not rows:
            raise ValueError(
                f'{type(self).__name__}: {path} lists no images; expected lines {expected}.'
            )
        return rows

    def as_int(self, value: str, relative: str, line_no: int, expected: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise self.malformed(
                osp.join(self.data_root, relative), line_no, value, expected
            ) from None
