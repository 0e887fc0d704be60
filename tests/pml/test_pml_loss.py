"""The PML trainer passing GSP's attribute vectors to the zero-shot loss (the loss itself:
tests/models/test_metric_loss_core.py)."""

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses
from pytorch_metric_learning.trainers import MetricLossOnly

from gpo_plugin.models.losses import ZeroShotLoss
from gpo_plugin.pml import (
    ClassDisjointPMLSampler,
    MetricLossOnlyWithAttributes,
    PoolingEmbedder,
    ZeroShotLossWrapper,
    build_metric_loss,
)

EMBED = 8


def _zero_shot_loss(metric=None):
    torch.manual_seed(1)
    return ZeroShotLossWrapper(metric or losses.ContrastiveLoss(), ZeroShotLoss(4, embed_dim=EMBED))


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
    loss = _zero_shot_loss()
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
    trainer = _toy_trainer(MetricLossOnlyWithAttributes, _zero_shot_loss(), dict(type='AvgPooling'))
    with pytest.raises(ValueError, match='only GSP'):
        trainer.train(num_epochs=1)


def test_trainer_loss_is_the_wrapper_on_the_embedders_outputs():
    """The old formulation (PML's loss on l2-normalised embeddings, 0.9 / 0.1) gives the
    trainer's value: the embedder's training output goes unnormalised to a loss whose distance
    normalises, the values do not move."""
    loss = build_metric_loss(
        dict(type='ContrastiveLoss', pos_margin=0.0, neg_margin=0.5),
        zero_shot=dict(type='ZeroShotLoss', num_classes=4, embed_dim=EMBED),
    )
    pooler = dict(type='GSP', num_prototypes=4, kcenter_init=False)
    trainer = _toy_trainer(MetricLossOnlyWithAttributes, loss, pooler)
    images, labels = next(iter(torch.utils.data.DataLoader(trainer.dataset, batch_size=16)))
    labels = torch.tensor([0] * 4 + [1] * 4 + [2] * 4 + [3] * 4)
    trainer.losses = {}
    trainer.calculate_loss((images, labels))
    embeddings, attributes = trainer.models['embedder'](
        trainer.models['trunk'](images), return_attributes=True
    )
    metric = losses.ContrastiveLoss(pos_margin=0.0, neg_margin=0.5)
    old = 0.9 * metric(F.normalize(embeddings), labels) + loss.zero_shot(attributes, labels)
    torch.testing.assert_close(trainer.losses['metric_loss'], old)
    trainer.models['embedder'].eval()  # what PML's testers see: unit vectors
    norms = trainer.models['embedder'](trainer.models['trunk'](images)).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(16))
