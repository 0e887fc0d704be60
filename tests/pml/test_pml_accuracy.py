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


# -- The behaviours PML's own calculator and tester tests check, against our class. --------

LINE = torch.tensor([[0.0], [1.0], [3.0], [10.0], [18.0], [30.0]])  # 1-d points, no ties
LINE_LABELS = torch.tensor([0, 0, 1, 1, 1, 2])  # class 2 has no other member: left out


def test_values_worked_out_by_hand():
    # Leave-one-out, k = max_bin_count = 2. Nearest others: 0 -> (1, 3); 1 -> (0, 3);
    # 3 -> (1, 0); 10 -> (3, 18); 18 -> (10, 30). Hits: [1 0], [1 0], [0 0], [1 1], [1 0],
    # with R = 1, 1, 2, 2, 2.
    calc = KNNAccuracyCalculator(include=KNN_METRICS, k='max_bin_count', device=CPU)
    got = calc.get_accuracy(LINE, LINE_LABELS)
    assert got['precision_at_1'] == pytest.approx(4 / 5)
    assert got['r_precision'] == pytest.approx((1 + 1 + 0 + 1 + 0.5) / 5)
    assert got['mean_average_precision_at_r'] == pytest.approx((1 + 1 + 0 + 1 + 0.5) / 5)
    assert got['mean_average_precision'] == pytest.approx((1 + 1 + 0 + 1 + 0.5) / 5)
    assert got['mean_reciprocal_rank'] == pytest.approx(4 / 5)


def test_per_class_averages_by_hand():
    options = dict(include=('precision_at_1',), k='max_bin_count', device=CPU)
    avg = KNNAccuracyCalculator(avg_of_avgs=True, **options).get_accuracy(LINE, LINE_LABELS)
    per_class = KNNAccuracyCalculator(return_per_class=True, **options)
    assert avg['precision_at_1'] == pytest.approx((1 + 2 / 3) / 2)
    assert per_class.get_accuracy(LINE, LINE_LABELS)['precision_at_1'] == pytest.approx(
        [1.0, 2 / 3]
    )


@pytest.mark.parametrize(
    'options, error',
    [
        (dict(include='precision_at_1'), TypeError),
        (dict(exclude=['no_such_metric']), ValueError),
        (dict(avg_of_avgs=True, return_per_class=True), ValueError),
        (dict(k=0), ValueError),
        (dict(k='all'), ValueError),
    ],
)
def test_bad_arguments_raise(options, error):
    with pytest.raises(error):
        KNNAccuracyCalculator(device=CPU, **options)


def test_bad_inputs_raise():
    calc = KNNAccuracyCalculator(include=KNN_METRICS, device=CPU)
    with pytest.raises(ValueError, match='same length'):
        calc.get_accuracy(LINE, LINE_LABELS[:5])
    with pytest.raises(ValueError, match='ref_includes_query'):
        calc.get_accuracy(LINE[:2] + 1, LINE_LABELS[:2], LINE, LINE_LABELS, True)


def test_queries_without_reference_class_give_nan_and_a_warning(caplog):
    calc = KNNAccuracyCalculator(include=KNN_METRICS, k='max_bin_count', device=CPU)
    with caplog.at_level('WARNING'):
        got = calc.get_accuracy(LINE[:2], torch.tensor([7, 8]), LINE, LINE_LABELS)
    assert all(math.isnan(v) for v in got.values())
    assert 'None of the query labels are in the reference set.' in caplog.text


def test_k_below_the_largest_class_warns_for_r_metrics(caplog):
    calc = KNNAccuracyCalculator(include=('r_precision',), k=1, device=CPU)
    with caplog.at_level('WARNING'):
        calc.get_accuracy(LINE, LINE_LABELS)
    assert "set k='max_bin_count'" in caplog.text
    caplog.clear()
    with caplog.at_level('WARNING'):
        KNNAccuracyCalculator(include=('precision_at_1',), k=1, device=CPU).get_accuracy(
            LINE, LINE_LABELS
        )
    assert caplog.text == ''


def test_custom_metric_sees_pml_keyword_arguments():
    seen = {}

    class WithCustom(KNNAccuracyCalculator):
        def calculate_width(self, knn_labels, knn_distances, query_labels, **kwargs):
            seen['shape'] = tuple(knn_labels.shape)
            seen['distances'] = knn_distances.clone()
            return knn_labels.shape[1]

        def requires_knn(self):
            return [*super().requires_knn(), 'width']

    got = WithCustom(k=3, device=CPU, exclude=('NMI', 'AMI')).get_accuracy(LINE, LINE_LABELS)
    assert got['width'] == 3 and seen['shape'] == (6, 3)
    # Squared Euclidean distances, nearest first (faiss's convention): 0 -> 1, 3, 10.
    assert seen['distances'][0].tolist() == [1.0, 9.0, 100.0]


def test_overridden_builtin_metric_is_used():
    class Halved(KNNAccuracyCalculator):
        def calculate_precision_at_1(self, **kwargs):
            return super().calculate_precision_at_1(**kwargs) / 2

    got = Halved(include=('precision_at_1',), k=2, device=CPU).get_accuracy(LINE, LINE_LABELS)
    assert got['precision_at_1'] == pytest.approx(0.4)


def test_duplicates_of_the_query_are_neighbours_but_itself_is_not():
    points = torch.tensor([[0.0], [0.0], [0.0], [5.0]])
    labels = torch.tensor([0, 1, 1, 0])
    got = KNNAccuracyCalculator(include=('r_precision',), k=None, device=CPU).get_accuracy(
        points, labels
    )
    # Query 1's only class mate is query 2 (distance 0, tied with query 0 of class 0).
    theirs = AccuracyCalculator(include=('r_precision',), k=None, device=CPU).get_accuracy(
        points, labels
    )
    assert got == theirs


def test_tester_with_query_and_reference_splits_on_tied_embeddings():
    # splits_to_eval [('val', ['val', 'train'])]: reference = val + train, the queries first.
    generator = torch.Generator().manual_seed(7)
    val = torch.randint(0, 2, (40, 4), generator=generator).float()  # many exact ties
    train = torch.randint(0, 2, (50, 4), generator=generator).float()
    val_labels = torch.randint(0, 5, (40,), generator=generator)
    train_labels = torch.randint(0, 5, (50,), generator=generator)
    datasets = {
        'val': torch.utils.data.TensorDataset(val, val_labels),
        'train': torch.utils.data.TensorDataset(train, train_labels),
    }
    results = []
    for calculator in (AccuracyCalculator, KNNAccuracyCalculator):
        tester = testers.GlobalEmbeddingSpaceTester(
            accuracy_calculator=calculator(include=KNN_METRICS, k='max_bin_count', device=CPU),
            data_device=CPU,
            dataloader_num_workers=0,
        )
        results.append(
            tester.test(
                datasets, 1, torch.nn.Identity(), splits_to_eval=[('val', ['val', 'train'])]
            )
        )
    _assert_same(results[1]['val'], results[0]['val'])


# -- Where PML is wrong: our answer and an independent formulation. -------------------------


def _by_hand(points, labels, k):
    """Leave-one-out metrics from a plain distance sort; missing neighbours are misses."""
    values = {name: [] for name in ('precision_at_1', 'mean_average_precision')}
    for i in range(len(points)):
        others = [j for j in range(len(points)) if j != i]
        others.sort(key=lambda j: float(((points[i] - points[j]) ** 2).sum()))
        hits = [bool(labels[j] == labels[i]) for j in others[:k]] + [False] * (k - len(others))
        relevant = sum(bool(labels[j] == labels[i]) for j in others)
        if relevant == 0:
            continue
        values['precision_at_1'].append(float(hits[0]))
        found, precision = 0, 0.0
        for rank, hit in enumerate(hits, 1):
            found += hit
            precision += found / rank if hit else 0.0
        values['mean_average_precision'].append(precision / relevant)
    return {name: sum(v) / len(v) for name, v in values.items()}


class _WithExtraMetric(KNNAccuracyCalculator):  # PML's own code then runs every metric
    def calculate_width(self, knn_labels, **kwargs):
        return knn_labels.shape[1]

    def requires_knn(self):
        return [*super().requires_knn(), 'width']


@pytest.mark.parametrize('calculator', [KNNAccuracyCalculator, _WithExtraMetric])
def test_k_beyond_the_references_counts_missing_neighbours_as_misses(calculator):
    # PML pads faiss's missing neighbours with index -1 and reads the last label there.
    points = torch.tensor([[0.0], [1.0], [4.0], [9.0], [16.0]])
    labels = torch.tensor([0, 1, 0, 1, 1])  # the last label is 1: PML would count hits
    names = ('precision_at_1', 'mean_average_precision')
    options = dict(include=names, k=8, device=CPU)
    extra = ('width',) if calculator is _WithExtraMetric else ()
    ours = calculator(**{**options, 'include': names + extra}).get_accuracy(points, labels)
    assert {n: ours[n] for n in names} == pytest.approx(_by_hand(points, labels, 8))
    theirs = AccuracyCalculator(**options).get_accuracy(points, labels)
    assert theirs['mean_average_precision'] != pytest.approx(ours['mean_average_precision'])
    if calculator is _WithExtraMetric:
        assert ours['width'] == 8


def test_labels_beyond_float32_precision_stay_distinct():
    # 2**24 and 2**24 + 1 are one float32 value: PML merges the two classes.
    points, small = _data('equal', seed=8)
    big = small + 2**24
    options = dict(include=KNN_METRICS, k='max_bin_count', device=CPU)
    ours = KNNAccuracyCalculator(**options).get_accuracy(points, big)
    _assert_same(ours, AccuracyCalculator(**options).get_accuracy(points, small))
    merged = AccuracyCalculator(**options).get_accuracy(points, big)
    assert merged['precision_at_1'] != pytest.approx(ours['precision_at_1'])


def test_sklearn_kmeans_fallback_finds_separated_classes():
    from gpo_plugin.pml.accuracy import SklearnKMeans

    labels = torch.arange(3).repeat_interleave(5)
    points = labels[:, None].float() * 100 + torch.randn(
        15, 2, generator=torch.Generator().manual_seed(0)
    )
    calc = KNNAccuracyCalculator(include=('NMI', 'AMI'), kmeans_func=SklearnKMeans(), device=CPU)
    assert calc.get_accuracy(points, labels) == pytest.approx({'NMI': 1.0, 'AMI': 1.0})
