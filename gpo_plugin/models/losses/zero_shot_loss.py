"""Zero-shot regularisation loss of GSP (docs/dml.md#zero-shot-regularisation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpo_plugin.registry import MODELS


@MODELS.register_module()
class ZeroShotLoss(nn.Module):
    """Predict one half of the batch's class embeddings from its attribute vectors with a ridge
    regression fitted on the other half (whose classes are disjoint), then classify.

    For halves k = 1, 2 with attributes A_k (h, m) and labels y_k, the kernel-form ridge solution
    W_k = A_k^T (A_k A_k^T + ridge I)^-1 E[y_k] predicts the other half, Y = A_other W_k, and the
    loss is the softmax cross-entropy over all training classes of logits scale * <E_c, y>,
    averaged over both directions. E holds learnable class embeddings (unit-normalised when
    ``normalize_embeddings``, so the scale 9.5 bounds the logits to [-9.5 |y|, 9.5 |y|]).

    The batch must consist of two halves with disjoint classes: ``ClassDisjointSampler`` yields
    such batches.

    Args:
        num_classes: number of training classes (labels in [0, num_classes)).
        embed_dim: size of the class embeddings. Defaults to 128.
        scale: softmax scale. Defaults to 9.5.
        ridge: ridge regularisation. Defaults to 0.05.
        normalize_embeddings: l2-normalise the class embeddings. Defaults to True.
        loss_weight: multiplies the loss. Defaults to 0.1 (with 0.9 on the metric loss).

    Shapes:
        attributes (B, m), labels (B,) -> scalar.
    """

    def __init__(
        self,
        num_classes: int,
        embed_dim: int = 128,
        scale: float = 9.5,
        ridge: float = 0.05,
        normalize_embeddings: bool = True,
        loss_weight: float = 0.1,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.scale = scale
        self.ridge = ridge
        self.normalize_embeddings = normalize_embeddings
        self.loss_weight = loss_weight
        self.class_embeddings = nn.Parameter(torch.randn(num_classes, embed_dim) / embed_dim**0.5)

    def forward(self, attributes: Tensor, labels: Tensor) -> Tensor:
        first, second = self._split(attributes, labels)
        with torch.autocast(device_type=attributes.device.type, enabled=False):
            attributes = attributes.float()
            embeddings = self.class_embeddings.float()
            if self.normalize_embeddings:
                embeddings = F.normalize(embeddings, dim=1)
            losses = [
                self._direction(attributes, labels, embeddings, fit, predict)
                for fit, predict in ((first, second), (second, first))
            ]
        return self.loss_weight * torch.stack(losses).mean()

    def _direction(
        self, attributes: Tensor, labels: Tensor, embeddings: Tensor, fit: slice, predict: slice
    ) -> Tensor:
        a_fit = attributes[fit]
        gram = a_fit @ a_fit.T + self.ridge * torch.eye(a_fit.shape[0], device=a_fit.device)
        weights = a_fit.T @ torch.linalg.solve(gram, embeddings[labels[fit]])  # (m, d)
        predicted = attributes[predict] @ weights
        logits = self.scale * predicted @ embeddings.T
        return F.cross_entropy(logits, labels[predict])

    def _split(self, attributes: Tensor, labels: Tensor) -> tuple[slice, slice]:
        if attributes.dim() != 2 or labels.shape != attributes.shape[:1]:
            raise ValueError(
                f'ZeroShotLoss: expected attributes (B, m) and labels (B,), got '
                f'{tuple(attributes.shape)} and {tuple(labels.shape)}.'
            )
        batch = labels.shape[0]
        if batch < 2 or batch % 2:
            raise ValueError(
                f'ZeroShotLoss: the batch size must be even to split it into two '
                f'class-disjoint halves, got {batch}.'
            )
        if int(labels.min()) < 0 or int(labels.max()) >= self.num_classes:
            raise ValueError(
                f'ZeroShotLoss: labels must lie in [0, num_classes = '
                f'{self.num_classes}), got [{int(labels.min())}, '
                f'{int(labels.max())}]; set `num_classes` of the zero-shot loss to '
                'the number of training classes.'
            )
        half = batch // 2
        shared = set(labels[:half].tolist()) & set(labels[half:].tolist())
        if shared:
            raise ValueError(
                f'ZeroShotLoss: the two halves of the batch share classes '
                f'{sorted(shared)[:10]}; it needs class-disjoint halves. Use '
                "train_dataloader.sampler=dict(type='ClassDisjointSampler', batch_size=B, ...) "
                'with B equal to train_dataloader.batch_size and an even number of classes per '
                'batch (B / num_per_class).'
            )
        return slice(0, half), slice(half, batch)
