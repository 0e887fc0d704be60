"""A pytorch-metric-learning loss with its miner (and cross-batch memory), gathered across
processes when the run is distributed."""

from __future__ import annotations

from pytorch_metric_learning.losses import CrossBatchMemory
from torch import Tensor, nn

from gpo_plugin.utils.dist import world_size


class MetricLoss(nn.Module):
    """``loss_weight * loss(embeddings, labels, miner(embeddings, labels))``, PML's call
    convention, so it fits ``loss_funcs['metric_loss']`` of PML's trainers as it is.

    ``loss`` may be a ``CrossBatchMemory`` (its miner, if any, runs inside it against the
    memory; ``miner`` must then be None). An ``indices_tuple`` given by the caller (PML's
    trainer mining with ``mining_funcs['tuple_miner']``) replaces the miner.

    Distributed runs are explicit: with ``gather=True`` (or ``gather=None`` and an initialised
    process group of more than one process) the loss and miner go through PML's
    ``DistributedLossWrapper`` / ``DistributedMinerWrapper``: every process computes the loss
    over the global batch (its own rows with gradient) times the world size, so DDP's gradient
    average equals one process on the concatenated batch. The wrappers are not sub-modules, so
    the state dict does not depend on the world size.

    Args:
        loss: a built PML loss, or a ``CrossBatchMemory`` around one.
        miner: a built PML miner, or None.
        loss_weight: multiplies the loss. Defaults to 1.0.
        gather: gather the batch of all processes: True, False, or None (when distributed).

    Shapes:
        embeddings (B, D), labels (B,) -> scalar.
    """

    def __init__(
        self,
        loss: nn.Module,
        miner: nn.Module | None = None,
        loss_weight: float = 1.0,
        gather: bool | None = None,
    ) -> None:
        super().__init__()
        if miner is not None and isinstance(loss, CrossBatchMemory):
            raise ValueError(
                'MetricLoss: with CrossBatchMemory the miner runs inside the memory; '
                'give it as CrossBatchMemory(miner=...) (build_metric_loss does this).'
            )
        self.loss = loss
        self.miner = miner
        self.loss_weight = loss_weight
        self.gather = gather
        self._distributed: tuple | None = None  # (loss, miner) wrappers, built on first use

    @property
    def uses_memory(self) -> bool:
        return isinstance(self.loss, CrossBatchMemory)

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        indices_tuple: tuple | None = None,
        ref_emb: Tensor | None = None,
        ref_labels: Tensor | None = None,
    ) -> Tensor:
        loss, miner = self._loss_and_miner()
        labels = labels.to(embeddings.device)
        if self.uses_memory:
            if ref_emb is not None:
                raise ValueError('MetricLoss: CrossBatchMemory takes no ref_emb / ref_labels.')
            return self.loss_weight * loss(embeddings, labels, indices_tuple)
        if indices_tuple is None and miner is not None:
            indices_tuple = miner(embeddings, labels, ref_emb, ref_labels)
        return self.loss_weight * loss(embeddings, labels, indices_tuple, ref_emb, ref_labels)

    def _loss_and_miner(self) -> tuple:
        gather = world_size() > 1 if self.gather is None else self.gather
        if not gather:
            return self.loss, self.miner
        if self._distributed is None:
            from pytorch_metric_learning.utils.distributed import (
                DistributedLossWrapper,
                DistributedMinerWrapper,
            )

            miner = DistributedMinerWrapper(self.miner) if self.miner is not None else None
            self._distributed = (DistributedLossWrapper(self.loss), miner)
        return self._distributed

    def extra_repr(self) -> str:
        return f'loss_weight={self.loss_weight}, gather={self.gather}'
