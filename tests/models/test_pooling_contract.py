"""The pooling contract, for every registered pooler: pool / pool_map -> PoolingOutput, the
declared weights_over / gives_attributes match the output, forward is mmpretrain's neck call,
and callers read the output rather than the class."""

from __future__ import annotations

import pytest
import torch

from gpo_plugin.models.necks import (
    GPO,
    GSP,
    AvgPooling,
    BaseSetPooling,
    GeMPooling,
    KMaxPooling,
    MaxPooling,
    PoolingOutput,
    rank_weights,
)
from gpo_plugin.pml import PoolingEmbedder
from gpo_plugin.registry import MODELS
from gpo_plugin.visualization import learned_rank_poolers

C = 6


def registered_poolers() -> list[type[BaseSetPooling]]:
    classes = [c for c in MODELS.module_dict.values() if isinstance(c, type)]
    return sorted((c for c in classes if issubclass(c, BaseSetPooling)), key=lambda c: c.__name__)


def make(cls: type[BaseSetPooling]) -> BaseSetPooling:
    """A small instance of each pooler (GSP needs its channels)."""
    if cls is GSP:
        return GSP(C, 5, num_prototypes=3, kcenter_init=False)
    if cls is KMaxPooling:
        return KMaxPooling(k=2)
    return cls()


def test_every_registered_pooler_is_covered():
    names = {cls.__name__ for cls in registered_poolers()}
    assert names == {'AvgPooling', 'GPO', 'GSP', 'GeMPooling', 'KMaxPooling', 'MaxPooling'}


@pytest.mark.parametrize('cls', registered_poolers(), ids=lambda c: c.__name__)
def test_pool_and_pool_map_follow_the_contract(cls):
    torch.manual_seed(0)
    pooler = make(cls).eval()
    features = torch.rand(3, 4, C) + 0.1
    lengths = torch.tensor([4, 4, 4]) if cls is GSP else torch.tensor([4, 2, 1])
    out = pooler.pool(features, lengths)
    assert isinstance(out, PoolingOutput)
    assert out.weights_over == cls.weights_over
    assert (out.attributes is not None) == cls.gives_attributes
    batch, dim = 3, out.pooled.shape[1]
    if out.weights is not None:
        assert out.weights.shape == (batch, 4)
        for b, n in enumerate(lengths.tolist()):
            assert torch.all(out.weights[b, n:] == 0)
    # The hook without checks gives the same result (the encoders' path).
    assert torch.equal(pooler.pool_padded(features, lengths).pooled, out.pooled)
    # forward: a set -> (B, D).
    torch.testing.assert_close(pooler(features, lengths), out.pooled)

    maps = torch.rand(2, C, 3, 2) + 0.1
    out_map = pooler.pool_map(maps)
    assert out_map.weights_over == cls.weights_over
    assert (out_map.attributes is not None) == cls.gives_attributes
    expected_weights = {'rank': (2, 6), 'position': (2, 3, 2), None: None}[cls.weights_over]
    shape = None if out_map.weights is None else tuple(out_map.weights.shape)
    assert shape == expected_weights
    # forward: mmpretrain's tuple of maps -> tuple of (B, D), the same vectors.
    (pooled,) = pooler((maps,))
    assert pooled.shape == (2, dim)
    torch.testing.assert_close(pooled, out_map.pooled)
    # A map and the set of its grid vectors pool alike.
    grid = maps.flatten(2).transpose(1, 2)
    torch.testing.assert_close(pooler.pool(grid).pooled, out_map.pooled, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    'pooler', [GPO(), MaxPooling(), KMaxPooling(k=2), AvgPooling()], ids=lambda p: type(p).__name__
)
def test_rank_weights_multiply_the_sorted_values(pooler):
    """'rank' means: pooled = sum_k weights[:, k] * (k-th largest value of each channel)."""
    features = torch.randn(3, 5, 4)
    lengths = torch.tensor([5, 3, 1])
    out = pooler.pool(features, lengths)
    for b, n in enumerate(lengths.tolist()):
        ordered = features[b, :n].sort(dim=0, descending=True).values  # (n, D)
        expected = (out.weights[b, :n, None] * ordered).sum(0)
        torch.testing.assert_close(out.pooled[b], expected, rtol=1e-5, atol=1e-6)


def test_position_weights_multiply_the_elements():
    """'position' means: GSP's pooled = mean_j weights[:, j] * proj(x_j)."""
    gsp = GSP(C, 5, num_prototypes=3, kcenter_init=False)
    features = torch.randn(2, 7, C)
    out = gsp.pool(features)
    expected = (out.weights[..., None] * gsp.proj(features)).mean(1)
    torch.testing.assert_close(out.pooled, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.attributes.sum(1), torch.ones(2))


def test_rank_weights_come_through_the_contract():
    gpo = GPO()
    sizes = [3, 7, 1]
    torch.testing.assert_close(rank_weights(gpo, sizes), gpo.pool_weights(torch.tensor(sizes)))
    assert rank_weights(MaxPooling(), [2, 4]).tolist() == [[1, 0, 0, 0], [1, 0, 0, 0]]
    with pytest.raises(ValueError, match="weights over 'position'"):
        rank_weights(GSP(C, 5, num_prototypes=3), [2])


def test_pooling_output_rejects_inconsistent_fields():
    with pytest.raises(ValueError, match='weights_over'):
        PoolingOutput(torch.zeros(1, 2), torch.ones(1, 3), 'ranks')
    with pytest.raises(ValueError, match='together'):
        PoolingOutput(torch.zeros(1, 2), torch.ones(1, 3))
    with pytest.raises(ValueError, match='together'):
        PoolingOutput(torch.zeros(1, 2), None, 'rank')


def test_a_pooler_must_implement_pool_padded():
    class Incomplete(BaseSetPooling):
        pass

    with pytest.raises(TypeError, match='pool_padded'):
        Incomplete()


def test_weight_hooks_pick_learned_rank_poolers_only():
    model = torch.nn.ModuleDict(
        {
            'a': GPO(),
            'b': MaxPooling(),
            'c': GSP(C, 5, num_prototypes=3),
            'd': GeMPooling(),
            'e': KMaxPooling(k=2),
        }
    )
    assert [name for name, _ in learned_rank_poolers(model)] == ['a']


@pytest.mark.parametrize('cls', [AvgPooling, GSP], ids=lambda c: c.__name__)
def test_embedder_returns_attributes_from_the_output(cls):
    embedder = PoolingEmbedder(make(cls), in_channels=C, embed_dim=4)
    embeddings, attributes = embedder(torch.randn(2, C, 3, 3), return_attributes=True)
    assert embeddings.shape == (2, 4)
    assert (attributes is not None) == cls.gives_attributes
    sets = embedder((torch.randn(2, 9, C), torch.tensor([9, 9])))
    assert sets.shape == (2, 4)
