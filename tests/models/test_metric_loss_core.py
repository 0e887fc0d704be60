"""The metric-learning core (models/losses: MetricLoss, ZeroShotLossWrapper,
build_metric_loss) and MetricLearningHead against PML's own losses, miners and
CrossBatchMemory on the same inputs, plus the VSE++ loss's names."""

import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from mmpretrain.structures import DataSample
from pytorch_metric_learning import losses, miners

from gpo_plugin.models.heads import MetricLearningHead
from gpo_plugin.models.losses import (
    MetricLoss,
    VSEContrastiveLoss,
    ZeroShotLoss,
    ZeroShotLossWrapper,
    build_metric_loss,
)
from gpo_plugin.registry import MODELS

LOSS = dict(type='ContrastiveLoss', pos_margin=0.0, neg_margin=0.5)
MINER = dict(type='MultiSimilarityMiner', epsilon=0.1)
# Two class-disjoint halves: {0, 1} then {2, 5}.
LABELS = torch.tensor([0] * 4 + [1] * 4 + [2] * 4 + [5] * 4)


def _samples(labels):
    return [DataSample().set_gt_label(int(y)) for y in labels]


def _zero_shot(seed=0):
    torch.manual_seed(seed)
    return ZeroShotLoss(num_classes=6, embed_dim=4).double()


def _reference(embeddings, labels, attributes, zero_shot, miner):
    """0.9 * PML's loss (mined by PML's miner) + the zero-shot term, written out."""
    indices = miners.MultiSimilarityMiner(epsilon=0.1)(embeddings, labels) if miner else None
    metric = losses.ContrastiveLoss(pos_margin=0.0, neg_margin=0.5)(embeddings, labels, indices)
    return 0.9 * metric, zero_shot(attributes, labels)


@st.composite
def _batches(draw):
    """Embeddings with ties (few distinct values), duplicated rows and at times a non-finite
    entry; softmax attributes; the class-disjoint labels above."""
    values = draw(
        st.lists(
            st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0]), min_size=16 * 6, max_size=16 * 6
        )
    )
    embeddings = torch.tensor(values, dtype=torch.float64).reshape(16, 6)
    duplicate = draw(st.integers(0, 15))
    embeddings[(duplicate + 1) % 16] = embeddings[duplicate]
    if draw(st.booleans()):
        embeddings[draw(st.integers(0, 15)), draw(st.integers(0, 5))] = draw(
            st.sampled_from([float('nan'), float('inf')])
        )
    seed = draw(st.integers(0, 2**16))
    attributes = torch.randn(16, 5, generator=torch.Generator().manual_seed(seed)).double()
    return embeddings, attributes.softmax(1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=_batches(), miner=st.booleans())
def test_builder_and_head_equal_pml_on_the_same_inputs(batch, miner):
    embeddings, attributes = batch
    built = build_metric_loss(LOSS, MINER if miner else None, zero_shot=_zero_shot()).double()
    head = MetricLearningHead(
        loss=LOSS,
        miner=MINER if miner else None,
        zero_shot_loss=dict(type='ZeroShotLoss', num_classes=6, embed_dim=4),
    ).double()
    head.load_state_dict(built.state_dict(prefix='criterion.'))
    metric, zsr = _reference(embeddings, LABELS, attributes, built.zero_shot, miner)
    got = built(embeddings, LABELS, attributes)
    torch.testing.assert_close(got, metric + zsr, equal_nan=True)
    parts = head.loss((embeddings,), _samples(LABELS), attributes=(attributes,))
    torch.testing.assert_close(parts['loss_metric'], metric, equal_nan=True)
    torch.testing.assert_close(parts['loss_zsr'], zsr, equal_nan=True)


def test_gradients_equal_pml_with_a_miner():
    embeddings = torch.randn(16, 6, dtype=torch.float64, requires_grad=True)
    attributes = torch.randn(16, 5, dtype=torch.float64).softmax(1).requires_grad_()
    built = build_metric_loss(LOSS, MINER, zero_shot=_zero_shot()).double()
    ours = torch.autograd.grad(built(embeddings, LABELS, attributes), (embeddings, attributes))
    metric, zsr = _reference(embeddings, LABELS, attributes, built.zero_shot, miner=True)
    theirs = torch.autograd.grad(metric + zsr, (embeddings, attributes))
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)


def test_memory_fills_like_pmls_cross_batch_memory():
    head = MetricLearningHead(
        loss=LOSS,
        miner=dict(type='PairMarginMiner'),
        cross_batch_memory=dict(memory_size=24),
        in_channels=6,
    ).double()
    theirs = losses.CrossBatchMemory(
        losses.ContrastiveLoss(pos_margin=0.0, neg_margin=0.5),
        embedding_size=6,
        memory_size=24,
        miner=miners.PairMarginMiner(),
    )
    torch.manual_seed(0)
    for _ in range(3):  # 16 + 16 > 24: the memory wraps around
        embeddings = torch.randn(16, 6, dtype=torch.float64)
        ours = head.loss((embeddings,), _samples(LABELS))['loss_metric']
        torch.testing.assert_close(ours, theirs(embeddings, LABELS))
    torch.testing.assert_close(head.metric_loss.embedding_memory, theirs.embedding_memory)


def test_caller_indices_replace_the_miner():
    loss = MetricLoss(losses.TripletMarginLoss(), miners.MultiSimilarityMiner())
    embeddings = torch.randn(16, 6)
    indices = miners.TripletMarginMiner(margin=0.5)(embeddings, LABELS)
    torch.testing.assert_close(
        loss(embeddings, LABELS, indices), losses.TripletMarginLoss()(embeddings, LABELS, indices)
    )


def test_builder_errors_and_defaults():
    with pytest.raises(ValueError, match='embedding size'):
        build_metric_loss(LOSS, memory=dict(memory_size=8))
    with pytest.raises(ValueError, match='CrossBatchMemory\\(miner=...\\)'):
        MetricLoss(losses.CrossBatchMemory(losses.ContrastiveLoss(), 4), miners.PairMarginMiner())
    plain = build_metric_loss(LOSS)
    assert isinstance(plain, MetricLoss) and plain.loss_weight == 1.0
    wrapped = build_metric_loss(LOSS, zero_shot=dict(type='ZeroShotLoss', num_classes=3))
    assert isinstance(wrapped, ZeroShotLossWrapper) and wrapped.loss.loss_weight == 0.9
    with pytest.raises(ValueError, match='no attribute vectors'):
        wrapped(torch.randn(4, 6), torch.tensor([0, 0, 1, 1]), None)


def test_head_loads_checkpoints_with_the_old_keys():
    kwargs = dict(
        loss=dict(type='ProxyAnchorLoss', num_classes=6, embedding_size=6),
        zero_shot_loss=dict(type='ZeroShotLoss', num_classes=6, embed_dim=4),
    )
    head = MetricLearningHead(**kwargs)
    old = {
        'metric_loss.proxies': torch.randn(6, 6),
        'zero_shot_loss.class_embeddings': torch.randn(6, 4),
    }
    head.load_state_dict(dict(old))
    torch.testing.assert_close(head.metric_loss.proxies.data, old['metric_loss.proxies'])
    torch.testing.assert_close(
        head.zero_shot_loss.class_embeddings.data, old['zero_shot_loss.class_embeddings']
    )


def test_vse_loss_name_and_deprecated_alias():
    assert MODELS.get('VSEContrastiveLoss') is VSEContrastiveLoss
    assert MMPRETRAIN_MODELS.get('VSEContrastiveLoss') is VSEContrastiveLoss
    # The old name stays in the gpo_plugin scope only, never in mmpretrain's registry.
    assert 'ContrastiveLoss' not in MMPRETRAIN_MODELS.module_dict
    im, s = torch.randn(5, 4), torch.randn(5, 4)
    with pytest.warns(DeprecationWarning, match='VSEContrastiveLoss'):
        old = MODELS.build(dict(type='ContrastiveLoss', margin=0.3))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        new = MODELS.build(dict(type='VSEContrastiveLoss', margin=0.3))
    torch.testing.assert_close(old(im, s), new(im, s))
