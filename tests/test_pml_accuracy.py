"""KNNAccuracyCalculator against PML's own AccuracyCalculator on the same embeddings."""

import math

import pytest
import torch
from pytorch_metric_learning import testers
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from gpo_plugin.pml import KNNAccuracyCalculator

CPU = torch.device('cpu')
KNN_METRICS = (
    'precision_at_1',
    'r_precision',
    'mean_average_precision_at_r',
    'mean_average_precision',
    'mean_reciprocal_rank',
)


def _labels(kind: str, generator) -> torch.Tensor:
    if kind == 'equal':  # 12 classes of 6
        return torch.arange(12).repeat_interleave(6)
    if kind == 'skewed':  # SOP-like: many classes of 2-12, one big one, and singletons
        sizes = torch.randint(2, 13, (15,), generator=generator).tolist() + [25, 1, 1]
        return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return torch.randint(0, 7, (90,), generator=generator)  # 'random'


def _data(kind: str, dim: int = 6, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    labels = _labels(kind, generator)
    labels = labels[torch.randperm(len(labels), generator=generator)]
    # Class means + noise: neighbours are informative but far from perfect.
    means = torch.randn(int(labels.max()) + 1, dim, generator=generator)
    points = means[labels] + 0.9 * torch.randn(len(labels), dim, generator=generator)
    return points, labels


def _assert_same(ours: dict, theirs: dict):
    assert ours.keys() == theirs.keys()
    for name, value in theirs.items():
        if isinstance(value, list):
            assert len(ours[name]) == len(value), name
            for a, b in zip(ours[name], value, strict=True):
                assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12), name
        else:
            assert ours[name] == pytest.approx(value, abs=1e-12), name


@pytest.mark.parametrize('backend', ['torch', 'faiss', 'symmetric'])
@pytest.mark.parametrize('kind', ['equal', 'skewed', 'random'])
@pytest.mark.parametrize('k', [None, 'max_bin_count', 3])
def test_query_is_reference(backend, kind, k):
    points, labels = _data(kind)
    kwargs = dict(include=KNN_METRICS, k=k, device=CPU)
    theirs = AccuracyCalculator(**kwargs).get_accuracy(points, labels)
    ours = KNNAccuracyCalculator(backend=backend, **kwargs).get_accuracy(points, labels)
    _assert_same(ours, theirs)


@pytest.mark.parametrize('backend', ['torch', 'faiss'])
@pytest.mark.parametrize('kind', ['equal', 'skewed', 'random'])
def test_query_differs_from_reference(backend, kind):
    points, labels = _data(kind)
    query, query_labels = points[:30] + 0.1, labels[:30].clone()
    query_labels[0] = 99  # a query whose class is not among the references (left out)
    kwargs = dict(include=KNN_METRICS, k='max_bin_count', device=CPU)
    theirs = AccuracyCalculator(**kwargs).get_accuracy(query, query_labels, points, labels)
    ours = KNNAccuracyCalculator(backend=backend, **kwargs).get_accuracy(
        query, query_labels, points, labels
    )
    _assert_same(ours, theirs)


@pytest.mark.parametrize('option', ['avg_of_avgs', 'return_per_class'])
def test_per_class_options(option):
    points, labels = _data('skewed', seed=1)
    kwargs = dict(include=KNN_METRICS[:3], k='max_bin_count', device=CPU, **{option: True})
    theirs = AccuracyCalculator(**kwargs).get_accuracy(points, labels)
    ours = KNNAccuracyCalculator(backend='torch', **kwargs).get_accuracy(points, labels)
    _assert_same(ours, theirs)


def test_reference_containing_the_queries_and_more():
    # What PML's tester passes for splits_to_eval=[('val', ['val', 'train'])].
    points, labels = _data('skewed', seed=2)
    query, query_labels = points[:40], labels[:40]
    kwargs = dict(include=KNN_METRICS[:3], k='max_bin_count', device=CPU)
    args = (query, query_labels, points, labels, True)
    theirs = AccuracyCalculator(**kwargs).get_accuracy(*args)
    _assert_same(KNNAccuracyCalculator(backend='torch', **kwargs).get_accuracy(*args), theirs)


def test_small_memory_budget_gives_the_same_values():
    points, labels = _data('random', seed=3)
    kwargs = dict(include=KNN_METRICS, k=None, device=CPU)
    theirs = AccuracyCalculator(**kwargs).get_accuracy(points, labels)
    ours = KNNAccuracyCalculator(backend='torch', max_memory_bytes=2048, **kwargs)
    _assert_same(ours.get_accuracy(points, labels), theirs)


def test_default_metrics_and_clustering_match():
    points, labels = _data('equal', seed=4)
    theirs = AccuracyCalculator(device=CPU).get_accuracy(points, labels)
    ours = KNNAccuracyCalculator(device=CPU).get_accuracy(points, labels)
    assert {'AMI', 'NMI', 'mean_average_precision_at_r'} <= set(ours)
    _assert_same(ours, theirs)


def test_tester_output_keys():
    points, labels = _data('equal', seed=5)
    dataset = torch.utils.data.TensorDataset(points, labels)
    results = []
    for calculator in (AccuracyCalculator, KNNAccuracyCalculator):
        tester = testers.GlobalEmbeddingSpaceTester(
            accuracy_calculator=calculator(include=KNN_METRICS[:3], k='max_bin_count', device=CPU),
            data_device=CPU,
            dataloader_num_workers=0,
        )
        results.append(tester.test({'val': dataset}, 1, torch.nn.Identity()))
    assert set(results[1]['val']) == {
        'epoch',
        'precision_at_1_level0',
        'r_precision_level0',
        'mean_average_precision_at_r_level0',
    }
    _assert_same(results[1]['val'], results[0]['val'])


def test_bad_backend_is_named():
    with pytest.raises(ValueError, match='backend'):
        KNNAccuracyCalculator(backend='annoy')
