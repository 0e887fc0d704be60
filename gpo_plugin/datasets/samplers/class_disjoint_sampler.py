"""m-per-class batches whose two halves hold disjoint classes (for GSP's zero-shot loss)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from gpo_plugin.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class ClassDisjointSampler(Sampler[int]):
    """Yields batches of ``batch_size // num_per_class`` distinct classes with ``num_per_class``
    samples each, grouped by class, so that the first and the second half of every batch hold
    disjoint classes (the number of classes per batch must be even).

    Set the dataloader's ``batch_size`` to the same ``batch_size``. Classes with fewer than
    ``num_per_class`` samples are sampled with replacement (a warning names them: a class
    with a single image contributes that image ``num_per_class`` times). An epoch has
    ``len(dataset) // batch_size`` batches (split across ranks); ``set_epoch`` reshuffles.

    Args:
        dataset: a dataset with ``get_gt_labels()`` (mmpretrain) or ``get_cat_ids(i)``.
        batch_size: samples per batch (per rank).
        num_per_class: samples of each class in a batch. Defaults to 4.
        seed: random seed (synchronised across ranks when None).
    """

    def __init__(
        self, dataset, batch_size: int, num_per_class: int = 4, seed: int | None = None
    ) -> None:
        if batch_size % num_per_class:
            raise ValueError(
                f'ClassDisjointSampler: batch_size ({batch_size}) must be a multiple '
                f'of num_per_class ({num_per_class}).'
            )
        classes_per_batch = batch_size // num_per_class
        if classes_per_batch % 2:
            raise ValueError(
                f'ClassDisjointSampler: batch_size / num_per_class = '
                f'{classes_per_batch} classes per batch; it must be even so the two '
                'halves of a batch hold disjoint classes.'
            )
        labels = _labels_of(dataset)
        self.classes, inverse = torch.unique(labels, return_inverse=True)
        if len(self.classes) < classes_per_batch:
            raise ValueError(
                f'ClassDisjointSampler: {classes_per_batch} classes per batch but the '
                f'dataset has only {len(self.classes)} classes; lower batch_size.'
            )
        order = torch.argsort(inverse, stable=True)
        counts = torch.bincount(inverse)
        warn_small_classes(self.classes, counts, num_per_class)
        self.members = list(torch.split(order, counts.tolist()))
        self.batch_size = batch_size
        self.num_per_class = num_per_class
        self.classes_per_batch = classes_per_batch
        self.rank, self.world_size = get_dist_info()
        self.seed = sync_random_seed() if seed is None else seed
        self.epoch = 0
        self.num_batches = max(1, len(labels) // (batch_size * self.world_size))

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        for batch in range(self.num_batches * self.world_size):
            classes = torch.randperm(len(self.members), generator=generator)[
                : self.classes_per_batch
            ]
            picked = [self._pick(int(c), generator) for c in classes]
            if batch % self.world_size == self.rank:
                yield from torch.cat(picked).tolist()

    def _pick(self, cls: int, generator: torch.Generator) -> torch.Tensor:
        members = self.members[cls]
        if len(members) >= self.num_per_class:
            return members[torch.randperm(len(members), generator=generator)[: self.num_per_class]]
        return members[torch.randint(len(members), (self.num_per_class,), generator=generator)]

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


def warn_small_classes(classes: torch.Tensor, counts: torch.Tensor, num_per_class: int) -> None:
    """Warn, naming them, about classes with fewer than ``num_per_class`` samples: their
    samples repeat within a batch (one image drawn ``num_per_class`` times makes positive
    pairs of an image with itself)."""
    small = (counts < num_per_class).nonzero().flatten().tolist()
    if not small:
        return
    named = ', '.join(f'{int(classes[i])} ({int(counts[i])})' for i in small[:20])
    more = f' and {len(small) - 20} more' if len(small) > 20 else ''
    warnings.warn(
        f'ClassDisjointSampler: {len(small)} class(es) have fewer than num_per_class='
        f'{num_per_class} samples and are drawn with repetition within a batch; label '
        f'(samples): {named}{more}. Lower num_per_class or drop these classes.',
        stacklevel=3,
    )


def _labels_of(dataset) -> torch.Tensor:
    if hasattr(dataset, 'get_gt_labels'):
        return torch.as_tensor(dataset.get_gt_labels()).reshape(-1).long()
    if hasattr(dataset, 'get_cat_ids'):
        return torch.tensor([dataset.get_cat_ids(i)[0] for i in range(len(dataset))])
    raise TypeError(
        f'ClassDisjointSampler: {type(dataset).__name__} exposes no labels; it needs '
        '`get_gt_labels()` or `get_cat_ids(index)`.'
    )
