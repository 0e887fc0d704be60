"""Our dataset readers as the (image, label) datasets PML's trainers and testers expect, and
the class-disjoint batch order as a PML-style sampler."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from gpo_plugin.datasets.samplers.class_disjoint_sampler import ClassDisjointSampler
from gpo_plugin.registry import DATASETS


class PMLDataset(Dataset):
    """An mmpretrain-style dataset (our CUB / Cars196 / SOP / digits readers, MLRC folds) as a
    ``torch.utils.data.Dataset`` of ``(image, label)``: the pipeline must end in
    ``PackInputs``; the packed uint8 image is turned into float and normalised.

    Args:
        dataset: the dataset, or its config dict (built from gpo_plugin's ``DATASETS``).
        mean: per-channel mean subtracted from the 0..255 pixels. Defaults to ImageNet's.
        std: per-channel std. Defaults to ImageNet's.
        to_rgb: reverse the channel order first (mmcv loads BGR), as ``ClsDataPreprocessor``
            does with ``to_rgb=True``. Defaults to False.

    Attributes:
        labels: (N,) int64 labels, for PML's ``MPerClassSampler(dataset.labels, m)``.
    """

    def __init__(
        self,
        dataset,
        mean: Sequence[float] = (123.675, 116.28, 103.53),
        std: Sequence[float] = (58.395, 57.12, 57.375),
        to_rgb: bool = False,
    ) -> None:
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]
        self.to_rgb = to_rgb
        self.labels = torch.as_tensor(self.dataset.get_gt_labels()).reshape(-1).long()

    def get_gt_labels(self):
        return self.labels.numpy()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        sample = self.dataset[index]
        if not isinstance(sample, dict) or 'inputs' not in sample:
            raise TypeError(
                f'PMLDataset: {type(self.dataset).__name__}[{index}] gave no packed `inputs`; '
                "end the dataset's pipeline with dict(type='PackInputs')."
            )
        image = sample['inputs'].float()
        if self.to_rgb and image.shape[0] == 3:
            image = image.flip(0)
        image = (image - self.mean) / self.std
        return image, int(self.labels[index])


class ClassDisjointPMLSampler(ClassDisjointSampler):
    """``ClassDisjointSampler`` built from labels, like PML's ``MPerClassSampler(labels, m,
    batch_size)``: batches of ``batch_size // num_per_class`` classes whose two halves hold
    disjoint classes (what ``ZeroShotLossWrapper`` needs). PML's trainers never call
    ``set_epoch``, so every pass reshuffles by itself.

    Args:
        labels: (N,) labels of the training set (e.g. ``PMLDataset.labels``).
        batch_size: the trainer's batch size.
        num_per_class: samples per class in a batch. Defaults to 4.
        seed: random seed.
    """

    def __init__(
        self, labels, batch_size: int, num_per_class: int = 4, seed: int | None = None
    ) -> None:
        super().__init__(_Labels(labels), batch_size, num_per_class, seed)

    def __iter__(self) -> Iterator[int]:
        order = list(super().__iter__())
        self.epoch += 1
        return iter(order)


class _Labels:
    def __init__(self, labels) -> None:
        self.labels = torch.as_tensor(labels).reshape(-1)

    def get_gt_labels(self) -> Tensor:
        return self.labels


class PMLSubset(Dataset):
    """The samples ``indices`` of a :class:`PMLDataset`, keeping its ``labels`` attribute (for
    PML's samplers and our hooks)."""

    def __init__(self, dataset: PMLDataset, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)
        self.labels = dataset.labels[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.dataset[self.indices[index]]


def query_gallery_splits(dataset: Dataset) -> dict[str, Dataset] | None:
    """``{'query': ..., 'gallery': ...}`` of a :class:`PMLDataset` whose samples carry
    ``is_query`` (In-Shop's test split), for PML's tester with
    ``splits_to_eval=[('query', ['gallery'])]``; None for any other dataset."""
    inner = getattr(dataset, 'dataset', None)
    if not isinstance(dataset, PMLDataset) or not hasattr(inner, 'get_data_info'):
        return None
    flags = [inner.get_data_info(i).get('is_query') for i in range(len(inner))]
    if None in flags:
        return None
    queries = [i for i, flag in enumerate(flags) if flag]
    gallery = [i for i, flag in enumerate(flags) if not flag]
    if not queries or not gallery:
        raise ValueError(
            f'{type(inner).__name__}: the evaluation split has {len(queries)} queries and '
            f'{len(gallery)} gallery images; the query/gallery protocol needs both.'
        )
    return {'query': PMLSubset(dataset, queries), 'gallery': PMLSubset(dataset, gallery)}
