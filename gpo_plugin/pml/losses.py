"""GSP's zero-shot regularisation around any pytorch-metric-learning loss."""

from __future__ import annotations

import torch
from pytorch_metric_learning.losses import BaseMetricLossFunction, CrossBatchMemory
from pytorch_metric_learning.utils.distributed import is_distributed
from torch import Tensor

from gpo_plugin.models.losses.zero_shot_loss import ZeroShotLoss
from gpo_plugin.registry import build_pml


class ZeroShotLossWrapper(BaseMetricLossFunction):
    """``(1 - weight) * loss(embeddings, labels, ...) + weight * L_zsr(attributes, labels)``:
    a PML loss plus GSP's zero-shot term, the paper's 0.9 / 0.1 split by default; equal to
    ``MetricLearningHead`` with ``zero_shot_loss`` on the same inputs.

    The attribute vectors come from :class:`MetricLossOnlyWithAttributes` (or a direct call
    with ``attributes=``). The class embeddings of the zero-shot term are parameters of this
    module: give PML's trainer ``optimizers['metric_loss_optimizer']`` over
    ``loss_funcs['metric_loss'].parameters()``.

    Under PML's ``DistributedLossWrapper`` the metric loss sees the gathered batch while the
    zero-shot term stays on this process's batch (its two halves are the class-disjoint
    ones); it is divided by the world size, which the wrapper multiplies back, so the averaged
    gradients equal one process computing the metric loss on the concatenated batch plus the
    mean of the per-process zero-shot terms.

    Args:
        loss: a PML loss (or ``CrossBatchMemory``) or its config dict (``build_pml``).
        num_classes: number of training classes (labels in [0, num_classes)).
        embed_dim: size of the learnable class embeddings.
        weight: weight of the zero-shot term (the metric loss gets 1 - weight). Defaults to 0.1.
        miner: a PML miner (or config) used when the trainer passes no ``indices_tuple``
            (not with ``CrossBatchMemory``, which holds its own). Defaults to None.
        scale, ridge, normalize_embeddings: as in ``ZeroShotLoss``.

    Shapes:
        embeddings (B, D), labels (B,), attributes (B, m) -> scalar.
    """

    def __init__(
        self,
        loss,
        num_classes: int,
        embed_dim: int,
        weight: float = 0.1,
        miner=None,
        scale: float = 9.5,
        ridge: float = 0.05,
        normalize_embeddings: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= weight < 1.0:
            raise ValueError(f'ZeroShotLossWrapper: `weight` must lie in [0, 1), got {weight}.')
        self.loss = build_pml(loss)
        self.miner = build_pml(miner)
        if self.miner is not None and isinstance(self.loss, CrossBatchMemory):
            raise ValueError(
                'ZeroShotLossWrapper: give the miner to CrossBatchMemory(miner=...), not here.'
            )
        self.weight = weight
        self.zero_shot = ZeroShotLoss(
            num_classes, embed_dim, scale, ridge, normalize_embeddings, loss_weight=weight
        )
        self._pending: Tensor | None = None

    def set_attributes(self, attributes: Tensor) -> None:
        """Hand over the attribute vectors of the next call (for callers such as PML's
        ``DistributedLossWrapper`` that cannot pass extra arguments)."""
        self._pending = attributes

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        indices_tuple=None,
        ref_emb: Tensor | None = None,
        ref_labels: Tensor | None = None,
        attributes: Tensor | None = None,
    ) -> Tensor:
        attributes = self._take_attributes(attributes)
        labels = labels.to(embeddings.device)
        metric = self._metric(embeddings, labels, indices_tuple, ref_emb, ref_labels)
        local = attributes.shape[0]
        zero_shot = self.zero_shot(attributes, labels[:local].long())
        return (1.0 - self.weight) * metric + zero_shot / self._gathered_factor(
            embeddings, ref_emb, local
        )

    def _metric(self, embeddings, labels, indices_tuple, ref_emb, ref_labels) -> Tensor:
        if isinstance(self.loss, CrossBatchMemory):
            if ref_emb is not None:
                raise ValueError('ZeroShotLossWrapper: CrossBatchMemory takes no ref_emb.')
            return self.loss(embeddings, labels, indices_tuple)
        if indices_tuple is None and self.miner is not None:
            indices_tuple = self.miner(embeddings, labels, ref_emb, ref_labels)
        return self.loss(embeddings, labels, indices_tuple, ref_emb, ref_labels)

    def _take_attributes(self, attributes: Tensor | None) -> Tensor:
        if attributes is None:
            attributes, self._pending = self._pending, None
        if attributes is None:
            raise ValueError(
                'ZeroShotLossWrapper: no attribute vectors; train with '
                'gpo_plugin.pml.MetricLossOnlyWithAttributes (instead of MetricLossOnly) and a '
                'PoolingEmbedder whose pooler is GSP, or call the loss with attributes=...'
            )
        return attributes

    @staticmethod
    def _gathered_factor(embeddings: Tensor, ref_emb: Tensor | None, local: int) -> int:
        """The world size when PML's DistributedLossWrapper gathered this batch (it multiplies
        the returned loss by the world size), else 1."""
        if not is_distributed():
            return 1
        world = torch.distributed.get_world_size()
        gathered = embeddings.shape[0] == world * local or (
            ref_emb is not None and ref_emb.shape[0] == world * embeddings.shape[0]
        )
        return world if world > 1 and gathered else 1


def find_zero_shot_wrapper(loss) -> ZeroShotLossWrapper | None:
    """The ZeroShotLossWrapper inside ``loss`` (itself, or wrapped e.g. by
    ``DistributedLossWrapper``/DDP through ``.loss``/``.module``), or None."""
    seen = 0
    while loss is not None and seen < 8:
        if isinstance(loss, ZeroShotLossWrapper):
            return loss
        loss = getattr(loss, 'loss', None) or getattr(loss, 'module', None)
        seen += 1
    return None
