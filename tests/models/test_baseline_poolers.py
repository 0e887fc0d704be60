"""Average, max, K-max and GeM pooling with masking, against direct per-sample math
and mmpretrain's own poolers."""

import pytest
import torch
from mmpretrain.models.necks import GeneralizedMeanPooling, GlobalAveragePooling

from gpo_plugin.models.necks import AvgPooling, GeMPooling, KMaxPooling, MaxPooling


def batch_with_garbage_padding():
    features = torch.randn(6, 10, 5)
    lengths = torch.tensor([1, 10, 3, 7, 2, 10])
    for b, n in enumerate(lengths.tolist()):
        features[b, n:] = 1e6  # padding must never leak into the result
    return features, lengths


def per_sample(fn, features, lengths):
    return torch.stack([fn(x[:n]) for x, n in zip(features, lengths.tolist(), strict=True)])


def top_k_mean(k):
    return lambda x: x.sort(dim=0, descending=True).values[: min(k, len(x))].mean(dim=0)


@pytest.mark.parametrize(
    'pooler, expected',
    [
        (AvgPooling(), lambda x: x.mean(dim=0)),
        (MaxPooling(), lambda x: x.max(dim=0).values),
        (KMaxPooling(k=3), top_k_mean(3)),
        (KMaxPooling(k=20), top_k_mean(20)),  # K clipped to N: plain mean
    ],
)
def test_masked_pooling_equals_per_sample(pooler, expected):
    features, lengths = batch_with_garbage_padding()
    out = pooler.pool(features, lengths)
    pooled, weights = out.pooled, out.weights
    torch.testing.assert_close(pooled, per_sample(expected, features, lengths))
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(6))
    assert out.weights_over == 'rank'


def test_kmax_weights_are_uniform_over_top_k():
    weights = KMaxPooling(k=3).pool(*batch_with_garbage_padding()).weights
    assert weights[0].tolist()[:1] == [1.0]
    torch.testing.assert_close(weights[1, :4], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0]))


def test_gem_masked_matches_formula_and_mmpretrain_on_maps():
    features, lengths = batch_with_garbage_padding()
    features = features.abs()
    gem = GeMPooling(p=3.0)
    out = gem.pool(features, lengths)
    pooled, weights = out.pooled, out.weights
    assert weights is None and out.weights_over is None
    expected = per_sample(
        lambda x: x.clamp(min=1e-6).pow(3).mean(dim=0).pow(1 / 3), features, lengths
    )
    torch.testing.assert_close(pooled, expected)

    maps = torch.rand(2, 4, 3, 3)
    torch.testing.assert_close(gem(maps), GeneralizedMeanPooling(p=3.0)(maps))
    torch.testing.assert_close(gem.pool(maps.flatten(2).transpose(1, 2)).pooled, gem(maps))


def test_average_maps_delegate_to_mmpretrain():
    maps = (torch.randn(2, 4, 3, 3), torch.randn(2, 6, 2, 5))
    ours = AvgPooling()(maps)
    theirs = GlobalAveragePooling()(maps)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize('pooler', [AvgPooling(), MaxPooling(), KMaxPooling(), GeMPooling()])
def test_bad_lengths_are_named(pooler):
    with pytest.raises(ValueError, match='lengths'):
        pooler.pool(torch.randn(2, 3, 4), torch.tensor([0, 3]))


def test_kmax_rejects_bad_k():
    with pytest.raises(ValueError, match='`k` must be a positive integer'):
        KMaxPooling(k=0)


@pytest.mark.parametrize('top', [None, 2, 50])
def test_sorted_channels_gradient(top):
    from torch.autograd import gradcheck, gradgradcheck

    from gpo_plugin.ops import sort_channels_descending

    features = torch.randn(3, 5, 2, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 1, 3])
    assert gradcheck(lambda x: sort_channels_descending(x, lengths, top), (features,))
    assert gradgradcheck(lambda x: sort_channels_descending(x, lengths, top), (features,))


def test_kmax_gradient_equals_per_sample_autograd():
    features, lengths = batch_with_garbage_padding()
    features.requires_grad_(True)
    upstream = torch.randn(6, 5)
    ours = torch.autograd.grad(
        (KMaxPooling(k=3).pool(features, lengths).pooled * upstream).sum(), features
    )[0]
    reference = torch.autograd.grad(
        (per_sample(top_k_mean(3), features, lengths) * upstream).sum(), features
    )[0]
    torch.testing.assert_close(ours, reference)


def test_sorting_never_writes_into_the_callers_memory():
    from gpo_plugin.ops import sort_channels_descending

    maps = torch.randn(3, 4, 6)  # (B, D, L) contiguous: the (B, L, D) view needs no copy
    original = maps.clone()
    ordered = sort_channels_descending(maps.transpose(1, 2), torch.tensor([6, 2, 4]))
    assert torch.equal(maps, original)
    assert torch.isinf(ordered).sum() == 0


@pytest.mark.parametrize('pooler', [AvgPooling(), MaxPooling(), GeMPooling()])
def test_non_map_backbone_outputs_are_named(pooler):
    with pytest.raises(ValueError, match=r'backbone outputs must be \(B, C, H, W\) maps'):
        pooler((torch.randn(2, 3, 4),))
