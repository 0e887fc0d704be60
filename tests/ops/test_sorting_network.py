"""The CPU sorting network behind sort_channels_descending, and GPO's nn.GRU path."""

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from gpo_plugin.models.necks import GPO
from gpo_plugin.ops import sorting
from gpo_plugin.ops.rank_weighted_sum import weighted_sum_sorted

from references.gpo import per_sample_gpo, published_gpo


@pytest.mark.parametrize('size', [*range(1, 18), 31, 32, 33, 36, 63, 64])
def test_network_sorts_every_size_like_torch_sort(size):
    values = torch.randint(-3, 4, (size, 5, 7)).float()  # many ties
    values[:, 0] = torch.randn(size, 7)
    values[0, 1, 0] = -torch.inf
    expected = values.sort(dim=0, descending=True).values
    ordered, source = sorting.network_sort(values.clone())
    assert torch.equal(ordered, expected)
    # The source rows point at the values that ended up in each rank.
    assert torch.equal(values.gather(0, source.long()), ordered)


def test_network_comparator_count_is_batchers():
    # Batcher's odd-even merge sort: 19 comparators for 8 inputs, 63 for 16, 191 for 32.
    assert [len(sorting.sorting_network(n)) for n in (8, 16, 32)] == [19, 63, 191]
    assert sorting.sorting_network(1) == ()


def test_network_rejects_non_contiguous_input():
    with pytest.raises(ValueError, match='contiguous'):
        sorting.network_sort(torch.randn(5, 4).t())


@pytest.fixture
def force(monkeypatch):
    """Choose the sorting path regardless of size, for small test tensors."""

    def choose(use_network: bool) -> None:
        monkeypatch.setattr(sorting, 'use_sorting_network', lambda *_: use_network)

    return choose


@pytest.mark.parametrize('slice_bytes', [None, 7 * 6 * 8])  # one sample a slice
@pytest.mark.parametrize('top', [None, 2, 5])
def test_network_path_equals_sort_path_with_gradients(force, monkeypatch, top, slice_bytes):
    if slice_bytes is not None:  # the backward scatters index slice by index slice
        monkeypatch.setattr(sorting, 'MAX_SLICE_BYTES', slice_bytes)
    features = torch.randn(4, 7, 6)
    lengths = torch.tensor([7, 3, 5, 1])
    upstream = torch.randn(4, 6, min(top or 7, 7))
    results = []
    for use_network in (True, False):
        force(use_network)
        x = features.clone().requires_grad_()
        out = sorting.sort_channels_descending(x, lengths, top)
        (out * upstream).sum().backward()
        results.append((out.detach(), x.grad))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])
    assert results[0][1][1, 3:].abs().sum() == 0  # no gradient into padding


@pytest.mark.parametrize('top', [None, 3])
def test_network_path_gradcheck_and_double_backward(force, monkeypatch, top):
    force(True)
    monkeypatch.setattr(sorting, 'MAX_SLICE_BYTES', 2 * 5 * 4 * 8)  # slices of 2 samples
    features = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 2, 4])
    assert gradcheck(lambda x: sorting.sort_channels_descending(x, lengths, top), (features,))
    assert gradgradcheck(lambda x: sorting.sort_channels_descending(x, lengths, top), (features,))


def test_weighted_sum_on_the_network_layout_gradcheck_and_double_backward(force):
    force(True)
    features = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(3, 5, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 2, 4])

    def pooled(x, w):
        return weighted_sum_sorted(sorting.sort_channels_descending(x, lengths), w)

    assert sorting.sort_channels_descending(features, lengths).stride(1) == 1  # network memory
    assert gradcheck(pooled, (features, weights))
    assert gradgradcheck(pooled, (features, weights))
    # Same values and gradients as the torch.sort path's plain bmm.
    results = []
    for use_network in (True, False):
        force(use_network)
        out = pooled(features, weights)
        results.append((out, *torch.autograd.grad(out.sum(), (features, weights))))
    for ours, theirs in zip(*results, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


def test_network_path_leaves_the_callers_memory_alone(force):
    force(True)
    features = torch.randn(2, 6, 3)
    before = features.clone()
    sorting.sort_channels_descending(features, torch.tensor([6, 4]))
    assert torch.equal(features, before)


def test_gpo_at_benchmark_scale_uses_the_network_and_matches_references():
    # 128 x 256 columns: above the threshold, so the default path is the network.
    features = torch.randn(128, 36, 256)
    lengths = torch.randint(20, 37, (128,))
    assert sorting.use_sorting_network(features, 36)
    gpo = GPO()
    x = features.clone().requires_grad_()
    pooled = gpo.pool(x, lengths).pooled
    pooled.sum().backward()
    ref_x = features.clone().requires_grad_()
    ref = per_sample_gpo(gpo, ref_x, lengths)[0]
    ref.sum().backward()
    assert torch.allclose(pooled, ref, atol=1e-5)
    assert torch.allclose(pooled, published_gpo(gpo, features, lengths)[0], atol=1e-5)
    assert torch.allclose(x.grad, ref_x.grad, atol=1e-5)


def test_packed_gru_path_equals_stepped_path():
    stepped = GPO()
    packed = GPO(gru_impl='packed')
    packed.load_state_dict(stepped.state_dict())
    lengths = torch.tensor([1, 4, 9, 9, 2])
    weights = [g.pool_weights(lengths) for g in (stepped, packed)]
    assert torch.allclose(weights[0], weights[1], atol=1e-6)
    grads = [
        torch.autograd.grad(w.pow(2).sum(), g.gru.weight_hh_l0_reverse)[0]
        for w, g in zip(weights, (stepped, packed), strict=True)
    ]
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_gru_impl_is_checked():
    with pytest.raises(ValueError, match='gru_impl'):
        GPO(gru_impl='cudnn')
