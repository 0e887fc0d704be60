"""Zero-shot regularisation loss (docs/dml.md#zero-shot-regularisation) and the class-disjoint sampler that feeds it."""

import math

import numpy as np
import pytest
import torch

from gpo_plugin.datasets import ClassDisjointSampler
from gpo_plugin.models.losses import ZeroShotLoss
from gpo_plugin.registry import DATA_SAMPLERS, MODELS


def test_hand_computed_one_hot_case():
    # Attributes one-hot, class embeddings the identity: the ridge fit on one half maps
    # attribute k to E[y_k] / (1 + 0.05), so each sample of the other half is predicted as the
    # embedding of a class of the *fitting* half; its logit there is 9.5 / 1.05, 0 elsewhere
    # (its own class included), both directions alike.
    loss = ZeroShotLoss(num_classes=4, embed_dim=4, loss_weight=1.0)
    with torch.no_grad():
        loss.class_embeddings.copy_(torch.eye(4))
    attributes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 2, 3])
    expected = math.log(math.exp(9.5 / 1.05) + 3)
    assert loss(attributes, labels).item() == pytest.approx(expected, rel=1e-6)
    assert ZeroShotLoss(4, 4)(attributes, labels).shape == ()  # default weight 0.1 applies
    weighted = ZeroShotLoss(num_classes=4, embed_dim=4)
    weighted.load_state_dict(loss.state_dict())
    assert weighted(attributes, labels).item() == pytest.approx(0.1 * expected, rel=1e-6)


@pytest.mark.parametrize('normalize', [True, False])
def test_matches_primal_ridge_regression_in_numpy(normalize):
    generator = torch.Generator().manual_seed(0)
    loss = ZeroShotLoss(num_classes=7, embed_dim=5, normalize_embeddings=normalize, loss_weight=1.0)
    attributes = torch.rand(6, 3, generator=generator).softmax(1)
    labels = torch.tensor([0, 0, 4, 2, 6, 6])
    ours = loss(attributes, labels).item()

    emb = loss.class_embeddings.detach().double().numpy()
    if normalize:
        emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    a, y = attributes.double().numpy(), labels.numpy()

    def direction(fit, pred):
        # Primal form (A^T A + ridge I)^-1 A^T E equals the kernel form by push-through.
        w = np.linalg.solve(a[fit].T @ a[fit] + 0.05 * np.eye(3), a[fit].T @ emb[y[fit]])
        logits = 9.5 * (a[pred] @ w) @ emb.T
        log_prob = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        return -log_prob[np.arange(len(pred)), y[pred]].mean()

    first, second = np.arange(3), np.arange(3, 6)
    expected = (direction(first, second) + direction(second, first)) / 2
    assert ours == pytest.approx(expected, rel=1e-5)


def test_gradients_reach_attributes_and_class_embeddings():
    loss = ZeroShotLoss(num_classes=4, embed_dim=3)
    attributes = torch.rand(4, 5).softmax(1).requires_grad_()
    loss(attributes, torch.tensor([0, 1, 2, 3])).backward()
    assert attributes.grad.abs().sum() > 0 and loss.class_embeddings.grad.abs().sum() > 0


def test_clear_errors():
    loss = ZeroShotLoss(num_classes=4)
    with pytest.raises(ValueError, match='share classes'):
        loss(torch.rand(4, 3), torch.tensor([0, 1, 1, 2]))
    with pytest.raises(ValueError, match='even'):
        loss(torch.rand(3, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match='num_classes'):
        loss(torch.rand(2, 3), torch.tensor([0, 9]))
    with pytest.raises(ValueError, match=r'\(B, m\)'):
        loss(torch.rand(4), torch.tensor([0, 1, 2, 3]))


class _Labels:
    def __init__(self, labels):
        self.labels = np.asarray(labels)

    def get_gt_labels(self):
        return self.labels

    def __len__(self):
        return len(self.labels)


def test_sampler_batches_are_m_per_class_with_disjoint_halves():
    labels = np.repeat(np.arange(10), [3, 8, 8, 5, 9, 6, 7, 8, 2, 10])
    sampler = ClassDisjointSampler(_Labels(labels), batch_size=12, num_per_class=3, seed=1)
    indices = list(sampler)
    assert len(indices) == len(sampler) == (len(labels) // 12) * 12
    for start in range(0, len(indices), 12):
        batch = labels[indices[start : start + 12]]
        groups = batch.reshape(4, 3)
        assert (groups == groups[:, :1]).all()  # consecutive m-per-class groups
        assert len(set(groups[:, 0])) == 4  # distinct classes
        assert not set(batch[:6]) & set(batch[6:])  # disjoint halves
        # the loss accepts every batch
        ZeroShotLoss(num_classes=10)(torch.rand(12, 4), torch.as_tensor(batch))
    # no repeated image within a class group unless the class is too small
    sampler.set_epoch(1)
    assert list(sampler) != indices
    sampler.set_epoch(0)
    assert list(sampler) == indices


def test_sampler_splits_batches_across_ranks(monkeypatch):
    import gpo_plugin.datasets.samplers.class_disjoint_sampler as module

    labels = np.repeat(np.arange(8), 6)
    seen = []
    for rank in range(2):
        monkeypatch.setattr(module, 'get_dist_info', lambda rank=rank: (rank, 2))
        seen.append(list(ClassDisjointSampler(_Labels(labels), 8, 2, seed=3)))
    assert len(seen[0]) == len(seen[1]) == 24 and seen[0] != seen[1]


def test_sampler_build_and_errors():
    dataset = _Labels(np.repeat(np.arange(6), 4))
    sampler = DATA_SAMPLERS.build(
        dict(type='ClassDisjointSampler', batch_size=8, num_per_class=2),
        default_args=dict(dataset=dataset, seed=0),
    )
    assert isinstance(sampler, ClassDisjointSampler)
    with pytest.raises(ValueError, match='even'):
        ClassDisjointSampler(dataset, batch_size=6, num_per_class=2)
    with pytest.raises(ValueError, match='multiple'):
        ClassDisjointSampler(dataset, batch_size=7, num_per_class=2)
    with pytest.raises(ValueError, match='only 6 classes'):
        ClassDisjointSampler(dataset, batch_size=16, num_per_class=2)


def test_registered():
    assert isinstance(MODELS.build(dict(type='ZeroShotLoss', num_classes=3)), ZeroShotLoss)
