"""Our readers as PML datasets, and the class-disjoint order as a PML-style sampler."""

import pytest
import torch
from pytorch_metric_learning.samplers import MPerClassSampler

from gpo_plugin.pml import ClassDisjointPMLSampler, PMLDataset


def test_class_disjoint_sampler_halves_and_reshuffles():
    labels = torch.arange(10).repeat_interleave(5)
    sampler = ClassDisjointPMLSampler(labels, batch_size=16, num_per_class=4, seed=0)
    passes = [list(sampler), list(sampler)]
    assert passes[0] != passes[1]  # PML never calls set_epoch: each pass reshuffles itself
    for order in passes:
        assert len(order) == len(sampler) == 48
        for start in range(0, len(order), 16):
            batch = labels[order[start : start + 16]]
            assert set(batch[:8].tolist()).isdisjoint(batch[8:].tolist())
            assert torch.bincount(batch, minlength=10).max() == 4


def test_digits_reader_as_pml_dataset_with_m_per_class_sampler():
    dataset = PMLDataset(
        dict(type='DigitsMetricDataset', split='test', pipeline=[dict(type='PackInputs')]),
        mean=[127.5] * 3,
        std=[127.5] * 3,
    )
    image, label = dataset[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert -1.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert label == int(dataset.labels[0]) and len(dataset.labels) == len(dataset) == 896
    sampler = MPerClassSampler(dataset.labels, m=4, batch_size=20, length_before_new_iter=100)
    loader = torch.utils.data.DataLoader(dataset, batch_size=20, sampler=sampler)
    _, labels = next(iter(loader))
    assert sorted(torch.bincount(labels).tolist()) == [4] * 5


def test_pipeline_without_pack_inputs_is_named():
    dataset = PMLDataset(dict(type='DigitsMetricDataset', split='test', pipeline=[]))
    with pytest.raises(TypeError, match='PackInputs'):
        dataset[0]
