"""Poolers with poisoned padding, GeM's two input forms, and argument/finiteness checks of GSP
and GPO (docs/fault_tolerance.md)."""

import math

import pytest
import torch

from gpo_plugin.models.necks import GPO, GSP, AvgPooling, GeMPooling, KMaxPooling, MaxPooling


def _gem_trained_to(p):
    """A GeM whose trainable p drifted to ``p`` (mmpretrain only checks p >= 1 at init)."""
    gem = GeMPooling(p=3.0)
    with torch.no_grad():
        gem.gem.p.fill_(p)
    return gem


POOLERS = {
    'avg': AvgPooling,
    'max': MaxPooling,
    'kmax': lambda: KMaxPooling(k=3),
    'gem': lambda: GeMPooling(p=3.0),
    'gem_p<1': lambda: _gem_trained_to(0.5),
    'gpo': GPO,
}


@pytest.mark.parametrize('poison', [math.nan, math.inf, -math.inf, 1e30])
@pytest.mark.parametrize('name', sorted(POOLERS))
def test_padding_never_leaks_into_output_or_gradient(name, poison):
    pooler = POOLERS[name]()
    features = torch.rand(4, 6, 3) + 0.1
    lengths = torch.tensor([1, 6, 3, 4])
    clean = features.clone()
    poisoned = features.clone()
    for b, n in enumerate(lengths.tolist()):
        clean[b, n:] = 0
        poisoned[b, n:] = poison
    expected = pooler.pool(clean, lengths).pooled
    poisoned.requires_grad_(True)
    pooled = pooler.pool(poisoned, lengths).pooled
    assert torch.equal(pooled, expected), name
    pooled.sum().backward()
    assert torch.isfinite(poisoned.grad).all()
    for b, n in enumerate(lengths.tolist()):
        assert not poisoned.grad[b, n:].any()  # padding gets no gradient


@pytest.mark.parametrize('p', [0.5, 1.0, 3.0])
@pytest.mark.parametrize('clamp', [True, False])
def test_gem_map_and_set_forms_agree(p, clamp):
    """mmpretrain pools maps; the set form must mean the same (clamp: features >= eps)."""
    gem = GeMPooling(clamp=clamp)
    with torch.no_grad():
        gem.gem.p.fill_(p)
    maps = torch.randn(3, 5, 4, 4)
    if not clamp:
        maps = maps.abs() + 0.01  # without the clamp, negatives^p is NaN in both forms
    from_map = gem(maps)
    from_set = gem.pool(maps.flatten(2).transpose(1, 2)).pooled
    torch.testing.assert_close(from_set, from_map, rtol=1e-5, atol=1e-6)
    expected = maps.flatten(2).double()
    if clamp:
        expected = expected.clamp(min=1e-6)
    expected = expected.pow(p).mean(-1).pow(1 / p)
    torch.testing.assert_close(from_set.double(), expected, rtol=1e-5, atol=1e-6)


def test_gem_arguments():
    for bad in (dict(p=0.5), dict(p=-1), dict(p=math.inf), dict(eps=0), dict(p=math.nan)):
        with pytest.raises(ValueError, match='GeMPooling: need a finite p >= 1'):
            GeMPooling(**bad)


@pytest.mark.parametrize(
    'kwargs, error, match',
    [
        (dict(num_prototypes=0), ValueError, 'num_prototypes` must be >= 1'),
        (dict(num_prototypes=2.5), TypeError, 'num_prototypes` must be an int'),
        (dict(gamma=math.inf), ValueError, 'gamma` must be a finite number > 0'),
        (dict(gamma=math.nan), ValueError, 'gamma` must be a finite number > 0'),
        (dict(gamma=0.0), ValueError, 'gamma` must be a finite number > 0'),
        (dict(transport_ratio=0.0), ValueError, 'transport_ratio'),
    ],
)
def test_gsp_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        GSP(in_channels=4, out_channels=3, **kwargs)


@pytest.mark.parametrize('temperature', [0.0, -0.1, math.inf, math.nan])
def test_gpo_temperature(temperature):
    with pytest.raises(ValueError, match='GPO: `temperature` must be a finite number > 0'):
        GPO(temperature=temperature)


@pytest.mark.parametrize('source', ['pooled', 'local'])
def test_gsp_refuses_non_finite_features_at_prototype_init(source):
    gsp = GSP(in_channels=4, out_channels=3, num_prototypes=4, kcenter_source=source).train()
    maps = torch.rand(4, 4, 2, 2)
    maps[2, 1, 0, 1] = math.nan
    before = gsp.prototypes.detach().clone()
    row = r'row 2\)' if source == 'pooled' else r'row \d+\)'
    with pytest.raises(ValueError, match=r'GSP: the embeddings collected .* non-finite .*' + row):
        gsp.pool_map(maps)
    assert torch.equal(gsp.prototypes.detach(), before) and not bool(gsp.prototypes_initialised)
    maps[2, 1, 0, 1] = 0.5  # a clean batch then initialises normally
    gsp.pool_map(maps)
    assert bool(gsp.prototypes_initialised) and torch.isfinite(gsp.prototypes).all()
    with pytest.raises(ValueError, match='init_prototypes: embeddings hold non-finite'):
        gsp.init_prototypes(torch.full((4, 3), math.inf))
