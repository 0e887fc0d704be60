"""KNNAccuracyCalculator against PML's installed AccuracyCalculator itself, on generated inputs:
whenever PML answers, ours gives the same keys, values (1e-6) and logged warnings."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from gpo_plugin.pml import KNNAccuracyCalculator

CPU = torch.device('cpu')
KNN = (
    'precision_at_1',
    'r_precision',
    'mean_average_precision_at_r',
    'mean_average_precision',
    'mean_reciprocal_rank',
)


def _with_custom_metrics(base):
    class Custom(base):  # the way PML documents custom metrics
        def calculate_first_hit(self, knn_labels, query_labels, not_lone_query_mask, **kwargs):
            hit = knn_labels[:, :1] == query_labels[:, None]
            return hit[not_lone_query_mask].float().mean().item()

        def calculate_mean_distance(self, knn_distances, **kwargs):
            return knn_distances.double().mean().item()

        def requires_knn(self):
            return super().requires_knn() + ['first_hit', 'mean_distance']

    return Custom


def _with_override(base):
    class Override(base):  # a built-in metric redefined
        def calculate_precision_at_1(self, **kwargs):
            value = super().calculate_precision_at_1(**kwargs)
            return value if isinstance(value, list) else 1.0 - value

        def calculate_mean_reciprocal_rank(self, knn_labels, **kwargs):
            return float(knn_labels.shape[1])

    return Override


CLASSES = {
    'plain': lambda base: base,
    'custom': _with_custom_metrics,
    'override': _with_override,
}


@st.composite
def _labels(draw, n: int):
    kind = draw(st.sampled_from(['few', 'singletons', 'skewed', 'bool']))
    if kind == 'bool':
        return torch.tensor(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    if kind == 'singletons':
        values = draw(st.permutations(range(n)))
    elif kind == 'few':
        values = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    else:
        values = draw(
            st.lists(st.sampled_from([0, 0, 0, 0, 1, 2, 3, 5, 9]), min_size=n, max_size=n)
        )
    dtype = draw(st.sampled_from([torch.int64, torch.int32, torch.uint8]))
    return torch.tensor(values, dtype=dtype)


@st.composite
def _embeddings(draw, n: int, dim: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    kind = draw(st.sampled_from(['gauss', 'binary', 'coarse', 'duplicates']))
    if kind == 'binary':  # exact ties everywhere
        x = torch.randint(0, 2, (n, dim), generator=generator).float()
    elif kind == 'coarse':  # low precision: rounded to a quarter
        x = (torch.randn(n, dim, generator=generator) * 4).round() / 4
    else:
        x = torch.randn(n, dim, generator=generator)
        if kind == 'duplicates' and n > 1:
            copies = torch.randint(0, n, (n // 2,), generator=generator)
            x[torch.randint(0, n, (n // 2,), generator=generator)] = x[copies]
    bad = draw(st.sampled_from([None] * 8 + [math.inf, -math.inf, math.nan, 3e19]))
    if bad is not None:
        x[draw(st.integers(0, n - 1)), draw(st.integers(0, dim - 1))] = bad
    return x


@st.composite
def cases(draw):
    n_ref = draw(st.integers(1, 30))
    dim = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    reference = draw(_embeddings(n_ref, dim, seed))
    ref_labels = draw(_labels(n_ref))
    mode = draw(st.sampled_from(['same', 'same', 'separate', 'prefix']))
    if mode == 'same':
        args = (reference, ref_labels)
    elif mode == 'prefix':
        m = draw(st.integers(1, n_ref))
        args = (reference[:m], ref_labels[:m], reference, ref_labels, True)
    else:
        n_q = draw(st.integers(1, 25))
        query = draw(_embeddings(n_q, dim, seed + 1))
        query_labels = draw(_labels(n_q)).to(ref_labels.dtype)
        if ref_labels.dtype == torch.bool:
            query_labels = query_labels.bool()
        args = (query, query_labels, reference, ref_labels)
    metrics = draw(st.lists(st.sampled_from(KNN), min_size=1, max_size=5, unique=True))
    per_class = draw(st.sampled_from([{}, {'avg_of_avgs': True}, {'return_per_class': True}]))
    options = dict(
        include=tuple(metrics),
        k=draw(st.sampled_from([None, 'max_bin_count', 1, 2, 3, 5, 8])),
        device=CPU,
        **per_class,
    )
    flavour = draw(st.sampled_from(sorted(CLASSES)))
    if flavour == 'custom':
        options['include'] += ('first_hit', 'mean_distance')
    ours = dict(
        backend=draw(st.sampled_from(['auto', 'torch', 'faiss', 'symmetric'])),
        max_memory_bytes=draw(st.sampled_from([512, 1 << 28])),
    )
    return args, options, flavour, ours


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _run(calculator, args):
    records = _Records()
    c_f.LOGGER.addHandler(records)
    try:
        return calculator.get_accuracy(*args), records.messages
    finally:
        c_f.LOGGER.removeHandler(records)


def _same(a, b) -> bool:
    if isinstance(b, list):
        return isinstance(a, list) and len(a) == len(b) and all(map(_same, a, b))
    if math.isnan(b):
        return math.isnan(a)
    return a == pytest.approx(b, abs=1e-6, rel=1e-6)


def _pads(args, k) -> bool:
    """PML reads label[-1] when k exceeds the references (docs/pml.md: we count misses)."""
    own = len(args) == 2 or len(args) == 5
    return isinstance(k, int) and k > len(args[2] if len(args) > 2 else args[0]) - int(own)


@settings(max_examples=360, deadline=None, suppress_health_check=list(HealthCheck))
@given(cases())
def test_same_answers_as_pml(case):
    args, options, flavour, ours_options = case
    pml_class = CLASSES[flavour](AccuracyCalculator)
    our_class = CLASSES[flavour](KNNAccuracyCalculator)
    try:
        theirs, their_warnings = _run(pml_class(**options), args)
    except Exception:  # noqa: BLE001 -- PML does not answer: nothing to match
        return
    ours, our_warnings = _run(our_class(**options, **ours_options), args)
    assert list(ours) == list(theirs)
    assert our_warnings == their_warnings
    if _pads(args, options['k']):
        return  # PML's value is wrong there; tested in test_pml_accuracy.py
    for name, value in theirs.items():
        assert _same(ours[name], value), (name, ours[name], value)


@pytest.mark.parametrize('flavour', ['plain', 'custom'])
def test_mrr_alone_raises_like_pml(flavour):
    # PML's requires_knn() omits mean_reciprocal_rank: asked alone, its function lacks the
    # neighbours and PML raises TypeError. A drop-in raises the same.
    points, labels = torch.randn(10, 3), torch.arange(10) % 3
    options = dict(include=('mean_reciprocal_rank',), device=CPU)
    for base in (AccuracyCalculator, KNNAccuracyCalculator):
        with pytest.raises(TypeError):
            CLASSES[flavour](base)(**options).get_accuracy(points, labels)


@pytest.fixture
def faiss_matrix_product_path():
    """faiss takes its norms + matrix-product path from 8 rows x dims on (default 128,000):
    PML's search and our faiss re-search of tied queries must agree on that path too."""
    import faiss

    default = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 8
    yield
    faiss.cvar.distance_compute_blas_threshold = default


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(cases())
def test_same_answers_on_faiss_matrix_product_path(faiss_matrix_product_path, case):
    test_same_answers_as_pml.hypothesis.inner_test(case)


@pytest.mark.parametrize('k', ['max_bin_count', 20])
def test_many_exact_ties_at_the_size_where_faiss_multiplies_matrices(k):
    # 3,000 x 48 binary embeddings: rows x dims above faiss's default BLAS threshold, so PML's
    # search takes the matrix-product path and hundreds of queries have mixed-label ties.
    generator = torch.Generator().manual_seed(11)
    points = torch.randint(0, 2, (3000, 48), generator=generator).float()
    labels = torch.randint(0, 500, (3000,), generator=generator)
    options = dict(include=KNN, k=k, device=CPU)
    ours = KNNAccuracyCalculator(**options).get_accuracy(points, labels)
    theirs = AccuracyCalculator(**options).get_accuracy(points, labels)
    for name in KNN:
        assert _same(ours[name], theirs[name]), name
