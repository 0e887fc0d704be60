"""ZeroShotLossWrapper against the mmengine-side head, and the PML trainer feeding it."""

import pytest
import torch
from mmpretrain.structures import DataSample
from pytorch_metric_learning import losses, miners
from pytorch_metric_learning.trainers import MetricLossOnly

from gpo_plugin.models.heads.metric_learning_head import MetricLearningHead
from gpo_plugin.pml import (
    ClassDisjointPMLSampler,
    MetricLossOnlyWithAttributes,
    PoolingEmbedder,
    ZeroShotLossWrapper,
)

NUM_CLASSES, EMBED, PROTOS = 6, 8, 5


def _batch(batch=16, dim=EMBED):
    # 4 classes x 4: classes {0, 1} in the first half, {2, 5} in the second.
    labels = torch.tensor([0] * 4 + [1] * 4 + [2] * 4 + [5] * 4)[:batch]
    embeddings = torch.randn(batch, dim, dtype=torch.float64, requires_grad=True)
    attributes = torch.softmax(torch.randn(batch, PROTOS, dtype=torch.float64), 1)
    return embeddings, labels, attributes.requires_grad_()


def _head_and_wrapper(miner=None, memory=None):
    loss_cfg = dict(type='ContrastiveLoss', pos_margin=0.0, neg_margin=0.5)
    head = MetricLearningHead(
        loss=loss_cfg,
        miner=miner,
        cross_batch_memory=memory,
        in_channels=EMBED if memory else None,
        zero_shot_loss=dict(type='ZeroShotLoss', num_classes=NUM_CLASSES, embed_dim=4),
    ).double()
    inner = loss_cfg
    if memory:
        inner = dict(type='CrossBatchMemory', loss=loss_cfg, embedding_size=EMBED, **memory)
    wrapper = ZeroShotLossWrapper(inner, NUM_CLASSES, embed_dim=4, miner=miner).double()
    with torch.no_grad():
        wrapper.zero_shot.class_embeddings.copy_(head.zero_shot_loss.class_embeddings)
    return head, wrapper


def _head_total(head, embeddings, labels, attributes):
    samples = [DataSample().set_gt_label(int(y)) for y in labels]
    parts = head.loss((embeddings,), samples, attributes=(attributes,))
    return parts['loss_metric'] + parts['loss_zsr']


@pytest.mark.parametrize(
    'miner', [None, dict(type='MultiSimilarityMiner', epsilon=0.1)], ids=['all-pairs', 'miner']
)
def test_wrapper_equals_mmengine_head(miner):
    head, wrapper = _head_and_wrapper(miner)
    embeddings, labels, attributes = _batch()
    expected = _head_total(head, embeddings, labels, attributes)
    grads = torch.autograd.grad(expected, (embeddings, attributes))
    got = wrapper(embeddings, labels, attributes=attributes)
    torch.testing.assert_close(got, expected)
    for ours, theirs in zip(torch.autograd.grad(got, (embeddings, attributes)), grads, strict=True):
        torch.testing.assert_close(ours, theirs)
    # 0.9 / 0.1 split, by hand from the parts.
    metric = losses.ContrastiveLoss(pos_margin=0.0, neg_margin=0.5)
    indices = miners.MultiSimilarityMiner(epsilon=0.1)(embeddings, labels) if miner else None
    zero_shot = wrapper.zero_shot(attributes, labels)
    torch.testing.assert_close(got, 0.9 * metric(embeddings, labels, indices) + zero_shot)


def test_wrapper_equals_head_with_cross_batch_memory():
    head, wrapper = _head_and_wrapper(memory=dict(memory_size=32))
    head.projection = torch.nn.Identity()
    for _ in range(3):  # the memories fill identically over several batches
        embeddings, labels, attributes = _batch()
        expected = _head_total(head, embeddings, labels, attributes)
        torch.testing.assert_close(wrapper(embeddings, labels, attributes=attributes), expected)


def test_wrapper_needs_attributes_and_names_the_trainer():
    _, wrapper = _head_and_wrapper()
    embeddings, labels, _ = _batch()
    with pytest.raises(ValueError, match='MetricLossOnlyWithAttributes'):
        wrapper(embeddings, labels)


def _toy_trainer(trainer_cls, loss, pooler, iterations=2):
    torch.manual_seed(0)
    labels = torch.arange(4).repeat_interleave(8)
    images = torch.randn(len(labels), 3, 8, 8) + labels[:, None, None, None].float()
    dataset = torch.utils.data.TensorDataset(images, labels)
    models = {
        'trunk': torch.nn.Conv2d(3, 6, 3, padding=1),
        'embedder': PoolingEmbedder(pooler, in_channels=6, embed_dim=EMBED),
    }
    optimizers = {
        f'{name}_optimizer': torch.optim.SGD(part.parameters(), lr=0.1)
        for name, part in {**models, 'metric_loss': loss}.items()
        if list(part.parameters())
    }
    trainer = trainer_cls(
        models=models,
        optimizers=optimizers,
        batch_size=16,
        loss_funcs={'metric_loss': loss},
        dataset=dataset,
        sampler=ClassDisjointPMLSampler(labels, batch_size=16, num_per_class=4, seed=0),
        iterations_per_epoch=iterations,
        data_device=torch.device('cpu'),
        dataloader_num_workers=0,
        end_of_iteration_hook=lambda t: t.seen.append(float(t.losses['metric_loss'])),
    )
    trainer.seen = []  # metric loss of every iteration
    return trainer


def test_trainer_feeds_attributes_and_trains_class_embeddings():
    loss = ZeroShotLossWrapper(losses.ContrastiveLoss(), num_classes=4, embed_dim=EMBED)
    pooler = dict(type='GSP', num_prototypes=4, kcenter_init=False)
    trainer = _toy_trainer(MetricLossOnlyWithAttributes, loss, pooler)
    before = loss.zero_shot.class_embeddings.detach().clone()
    trainer.train(num_epochs=1)
    # `metric_loss_optimizer` is the documented key of the class embeddings' optimizer.
    assert 'metric_loss_optimizer' in trainer.optimizers
    assert not torch.equal(before, loss.zero_shot.class_embeddings.detach())
    assert len(trainer.seen) == 2 and min(trainer.seen) > 0


def test_trainer_with_a_plain_loss_matches_metric_loss_only():
    values = []
    for trainer_cls in (MetricLossOnly, MetricLossOnlyWithAttributes):
        trainer = _toy_trainer(trainer_cls, losses.TripletMarginLoss(), dict(type='AvgPooling'))
        trainer.train(num_epochs=1)
        values.append(trainer.seen)
    assert values[0] == values[1] and min(values[0]) > 0


def test_zero_shot_with_a_non_gsp_pooler_is_a_clear_error():
    loss = ZeroShotLossWrapper(losses.ContrastiveLoss(), num_classes=4, embed_dim=EMBED)
    trainer = _toy_trainer(MetricLossOnlyWithAttributes, loss, dict(type='AvgPooling'))
    with pytest.raises(ValueError, match='only GSP'):
        trainer.train(num_epochs=1)
