"""One builder for the metric-learning loss of both frameworks: PML loss + miner +
cross-batch memory + GSP's zero-shot term (docs/pml.md#one-loss-builder)."""

from __future__ import annotations

from torch import nn

from gpo_plugin.registry import MODELS, build_pml

from .metric_loss import MetricLoss
from .zero_shot_loss_wrapper import ZeroShotLossWrapper


def build_metric_loss(
    loss: dict | nn.Module,
    miner: dict | nn.Module | None = None,
    memory: dict | None = None,
    zero_shot: dict | nn.Module | None = None,
    metric_weight: float | None = None,
    embedding_size: int | None = None,
    gather: bool | None = None,
) -> MetricLoss | ZeroShotLossWrapper:
    """Assemble the loss ``MetricLearningHead`` and PML's trainers use.

    Args:
        loss: PML loss config (``build_pml``), e.g. ``dict(type='ContrastiveLoss',
            pos_margin=0, neg_margin=0.5)``, or a built loss.
        miner: PML miner config or instance, or None.
        memory: kwargs of PML's ``CrossBatchMemory`` except loss / miner / embedding_size
            (e.g. ``dict(memory_size=1024)``), or None; the miner then mines against the memory.
        zero_shot: a ``ZeroShotLoss`` config (``MODELS``; ``embed_dim`` its own, e.g.
            ``dict(type='ZeroShotLoss', num_classes=100)``) or instance, or None.
        metric_weight: weight of the metric loss. Defaults to 0.9 with a zero-shot term
            (which carries 0.1), else 1.
        embedding_size: the embedding size D; needed with ``memory``.
        gather: see :class:`MetricLoss`.

    Returns:
        :class:`MetricLoss`, or :class:`ZeroShotLossWrapper` around it with ``zero_shot``.
    """
    metric_loss, miner = build_pml(loss), build_pml(miner)
    if memory is not None:
        if embedding_size is None:
            raise ValueError(
                'build_metric_loss: cross-batch memory needs the embedding size; in '
                'MetricLearningHead set `in_channels` (and `out_channels`), else pass '
                '`embedding_size`.'
            )
        metric_loss = build_pml(
            dict(
                type='CrossBatchMemory',
                loss=metric_loss,
                embedding_size=embedding_size,
                miner=miner,
                **memory,
            )
        )
        miner = None
    if metric_weight is None:
        metric_weight = 0.9 if zero_shot else 1.0
    built = MetricLoss(metric_loss, miner, loss_weight=metric_weight, gather=gather)
    if not zero_shot:
        return built
    if isinstance(zero_shot, dict):
        zero_shot = MODELS.build(dict(zero_shot, type=zero_shot.get('type', 'ZeroShotLoss')))
    return ZeroShotLossWrapper(built, zero_shot)
