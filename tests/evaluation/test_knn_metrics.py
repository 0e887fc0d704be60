"""k-NN retrieval metrics: equal to PML's AccuracyCalculator, recalls and hand cases."""

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from gpo_plugin.evaluation import MetricLearningMetric
from gpo_plugin.evaluation.functional import knn, retrieval_metrics
from gpo_plugin.evaluation.functional.knn_search import faiss

PML_KEYS = ('precision_at_1', 'r_precision', 'mean_average_precision_at_r')
BACKENDS = ['torch', 'symmetric'] + (['faiss'] if faiss is not None else [])


def _labels(kind: str, n: int, generator: torch.Generator) -> torch.Tensor:
    if kind == 'uniform':  # ~equal class sizes
        return torch.randint(0, 40, (n,), generator=generator)
    if kind == 'pairs':  # SOP-like: many small classes, some singletons (lone queries)
        return torch.randint(0, n // 3, (n,), generator=generator)
    if kind == 'skewed':  # a few huge classes, a long tail
        weights = 1.0 / torch.arange(1, 61).double() ** 1.5
        return torch.multinomial(weights, n, replacement=True, generator=generator)
    raise ValueError(kind)


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('kind', ['uniform', 'pairs', 'skewed'])
def test_equal_to_pml_accuracy_calculator(kind, backend):
    generator = torch.Generator().manual_seed(1)
    labels = _labels(kind, 700, generator)
    # Clustered embeddings so the metrics are far from chance.
    centers = torch.randn(int(labels.max()) + 1, 16, generator=generator)
    embeddings = centers[labels] + 0.8 * torch.randn(700, 16, generator=generator)
    ours = retrieval_metrics(embeddings, labels, backend=backend, max_memory_bytes=40_000)
    calc = AccuracyCalculator(include=PML_KEYS, k='max_bin_count')
    theirs = calc.get_accuracy(embeddings, labels)
    # faiss: the same k-NN engine as PML, so bit-equal values. torch / symmetric: fp32
    # distances rounded differently can swap two neighbours at a near-tie (~1e-8).
    tolerance = 1e-12 if backend == 'faiss' else 1e-6
    for key in PML_KEYS:
        assert ours[key] == pytest.approx(theirs[key], abs=tolerance), key
    assert 0.05 < ours['mean_average_precision_at_r'] < 0.95


def test_equal_to_pml_with_separate_query_set():
    generator = torch.Generator().manual_seed(2)
    reference, ref_labels = (
        torch.randn(300, 8, generator=generator),
        _labels('uniform', 300, generator),
    )
    query, query_labels = (
        torch.randn(120, 8, generator=generator),
        _labels('uniform', 120, generator),
    )
    ours = retrieval_metrics(
        reference, ref_labels, query=query, query_labels=query_labels, backend='torch'
    )
    theirs = AccuracyCalculator(include=PML_KEYS, k='max_bin_count').get_accuracy(
        query, query_labels, reference, ref_labels
    )
    for key in PML_KEYS:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-12), key


def test_hand_computed_case_without_ties():
    points = torch.tensor([[0.0], [1.0], [5.0], [2.2], [3.0], [10.0]])
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    m = retrieval_metrics(points, labels, recall_ks=(1, 2), backend='torch')
    # query: neighbours' labels (nearest first), R, hits within R, AP@R
    # x=0:   1(a) 2.2(b) 3(b) 5(a)  R=2  [1,0]  AP 1/2;  recall@2 1
    # x=1:   0(a) 2.2(b) 3(b) 5(a)  R=2  [1,0]  AP 1/2;  recall@2 1
    # x=5:   3(b) 2.2(b) 1(a) 0(a)  R=2  [0,0]  AP 0;    recall@2 0
    # x=2.2: 3(b) 1(a)              R=1  [1]    AP 1;    recall@2 1
    # x=3:   2.2(b) 5(a)            R=1  [1]    AP 1;    recall@2 1
    assert m['precision_at_1'] == pytest.approx(4 / 5)
    assert m['r_precision'] == pytest.approx((0.5 + 0.5 + 0 + 1 + 1) / 5)
    assert m['mean_average_precision_at_r'] == pytest.approx((0.5 + 0.5 + 0 + 1 + 1) / 5)
    assert m['recall_at_1'] == pytest.approx(4 / 5)
    assert m['recall_at_2'] == pytest.approx(4 / 5)


def test_map_at_r_rewards_order_within_r():
    # One query with R = 3 relevant items; hits at ranks 1 and 3 -> AP@R = (1/1 + 2/3) / 3.
    points = torch.tensor([[0.0], [1.0], [2.0], [3.0], [100.0], [101.0]])
    labels = torch.tensor([0, 0, 1, 0, 0, 1])
    m = retrieval_metrics(points, labels, backend='torch', recall_ks=())
    theirs = AccuracyCalculator(include=PML_KEYS, k='max_bin_count').get_accuracy(points, labels)
    for key in PML_KEYS:
        assert m[key] == pytest.approx(theirs[key])
    # Hand value for query x=0: neighbours 1(a) 2(b) 3(a) -> (1 + 2/3) / 3.
    index = knn(points, 3, backend='torch')
    assert index[0].tolist() == [1, 2, 3]


@pytest.mark.parametrize('backend', BACKENDS)
def test_recall_at_k_against_brute_force(backend):
    generator = torch.Generator().manual_seed(3)
    labels = _labels('pairs', 400, generator)
    embeddings = torch.randn(400, 6, generator=generator)
    m = retrieval_metrics(embeddings, labels, backend=backend)
    distances = torch.cdist(embeddings, embeddings)
    distances.fill_diagonal_(float('inf'))
    order = distances.argsort(dim=1)
    same = labels[order] == labels[:, None]
    counts = torch.bincount(labels)[labels] - 1
    keep = counts > 0
    for K in (1, 2, 4, 8):
        assert m[f'recall_at_{K}'] == pytest.approx(same[keep, :K].any(1).double().mean().item())


def test_chunked_torch_knn_equals_unchunked_and_faiss():
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(257, 12, generator=generator)
    full = knn(x, 5, backend='torch')
    chunked = knn(x, 5, backend='torch', max_memory_bytes=4 * 257 * 7)  # 7 rows a chunk
    assert torch.equal(full, chunked)
    assert not (full == torch.arange(257)[:, None]).any()
    if faiss is not None:
        assert torch.equal(full, knn(x, 5, backend='faiss'))


def test_mmengine_metric_process_and_compute():
    generator = torch.Generator().manual_seed(5)
    labels = _labels('uniform', 200, generator)
    embeddings = torch.randn(200, 8, generator=generator)
    metric = MetricLearningMetric(with_nmi=True)
    metric.process(
        None,
        [
            dict(embedding=e, gt_label=torch.tensor([y]))
            for e, y in zip(embeddings, labels, strict=True)
        ],
    )
    results = metric.evaluate(200)
    normalized = torch.nn.functional.normalize(embeddings, dim=1)
    theirs = AccuracyCalculator(include=PML_KEYS, k='max_bin_count').get_accuracy(
        normalized, labels
    )
    for key in PML_KEYS:
        assert results[f'dml/{key}'] == pytest.approx(theirs[key], abs=1e-12)
    assert 0 <= results['dml/nmi'] <= 1


def test_clear_errors():
    with pytest.raises(ValueError, match=r'\(N, D\)'):
        retrieval_metrics(torch.randn(5), torch.zeros(5))
    with pytest.raises(ValueError, match='labels'):
        retrieval_metrics(torch.randn(5, 2), torch.zeros(4))
    with pytest.raises(ValueError, match='no query'):
        retrieval_metrics(torch.randn(3, 2), torch.tensor([0, 1, 2]))
    metric = MetricLearningMetric()
    with pytest.raises(KeyError, match='MetricLearningHead'):
        metric.process(None, [dict(gt_label=torch.tensor([0]))])


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    n=st.integers(3, 40),
    dim=st.integers(1, 3),
    classes=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    kind=st.sampled_from(['binary', 'coarse', 'duplicates']),
    backend=st.sampled_from(BACKENDS),
)
def test_ties_equal_pml_accuracy_calculator(n, dim, classes, seed, kind, backend):
    # Exact ties (binary / rounded / duplicated embeddings) of mixed labels: the values equal
    # PML's, whose faiss k-NN decides the order of equidistant neighbours.
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=generator)
    if kind == 'binary':
        points = torch.randint(0, 2, (n, dim), generator=generator).float()
    elif kind == 'coarse':
        points = (torch.randn(n, dim, generator=generator) * 2).round() / 2
    else:
        points = torch.randn(n, dim, generator=generator)
        points[n // 2 :] = points[: n - n // 2].clone()
    assume(bool((torch.bincount(labels)[labels] > 1).any()))
    ours = retrieval_metrics(points, labels, recall_ks=(1,), backend=backend, max_memory_bytes=4096)
    theirs = AccuracyCalculator(include=PML_KEYS, k='max_bin_count').get_accuracy(points, labels)
    for key in PML_KEYS:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-9), key
    assert ours['recall_at_1'] == pytest.approx(theirs['precision_at_1'], abs=1e-9)


def test_non_finite_embeddings_are_named():
    points = torch.randn(6, 2)
    points[1, 0] = float('inf')
    with pytest.raises(ValueError, match='inf / NaN'):
        retrieval_metrics(points, torch.tensor([0, 0, 1, 1, 2, 2]))


def _samples(embeddings, labels, is_query=None):
    samples = [
        dict(embedding=e, gt_label=torch.tensor([y]))
        for e, y in zip(embeddings, labels, strict=True)
    ]
    if is_query is not None:
        for sample, flag in zip(samples, is_query.tolist(), strict=True):
            sample['is_query'] = flag
    return samples


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_query_gallery_protocol_equals_pml_and_brute_force(seed):
    # In-Shop style: queries search the gallery only; ties of mixed labels included.
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 12, (90,), generator=generator)
    embeddings = torch.randint(0, 2, (90, 4), generator=generator).float() + 0.1
    is_query = torch.rand(90, generator=generator) < 0.4
    metric = MetricLearningMetric(recall_ks=(1, 10, 20), protocol='query_gallery', normalize=False)
    metric.process(None, _samples(embeddings, labels, is_query))
    got = metric.evaluate(90)
    query, gallery = embeddings[is_query], embeddings[~is_query]
    q_labels, g_labels = labels[is_query], labels[~is_query]
    theirs = AccuracyCalculator(include=PML_KEYS, k='max_bin_count').get_accuracy(
        query, q_labels, gallery, g_labels
    )
    for key in PML_KEYS:
        assert got[f'dml/{key}'] == pytest.approx(theirs[key], abs=1e-12), key
    # Recall@K by a plain sort: the K-th distance decides, so ties cannot matter for it.
    distances = torch.cdist(query.double(), gallery.double())
    kth = distances.sort(1).values
    keep = (g_labels[None] == q_labels[:, None]).any(1)
    for K in (1, 10, 20):
        same = g_labels[None] == q_labels[:, None]
        within = distances <= kth[:, K - 1 : K]
        strictly = distances < kth[:, K - 1 : K]
        # A hit strictly inside the K nearest counts; a hit only at the K-th distance's tie
        # counts whenever a faiss order can place it there: check the two bounds.
        low = (same & strictly).any(1)[keep].double().mean().item()
        high = (same & within).any(1)[keep].double().mean().item()
        assert low - 1e-12 <= got[f'dml/recall_at_{K}'] <= high + 1e-12


def test_customary_recall_sets_and_protocol_errors():
    assert MetricLearningMetric(recall_ks='sop').recall_ks == (1, 10, 100, 1000)
    assert MetricLearningMetric(recall_ks='inshop').recall_ks == (1, 10, 20, 30, 40)
    with pytest.raises(ValueError, match='recall_ks'):
        MetricLearningMetric(recall_ks='imagenet')
    with pytest.raises(ValueError, match='protocol'):
        MetricLearningMetric(protocol='gallery')
    metric = MetricLearningMetric(protocol='query_gallery')
    with pytest.raises(KeyError, match='is_query'):
        metric.process(None, [dict(embedding=torch.randn(3), gt_label=torch.tensor([0]))])
    metric.process(
        None, _samples(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]), torch.ones(4).bool())
    )
    with pytest.raises(ValueError, match='both queries and'):
        metric.evaluate(4)
