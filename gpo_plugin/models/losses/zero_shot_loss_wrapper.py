"""GSP's zero-shot regularisation added to any metric loss (docs/dml.md, docs/pml.md)."""

from __future__ import annotations

from torch import Tensor, nn

from .zero_shot_loss import ZeroShotLoss


class ZeroShotLossWrapper(nn.Module):
    """``loss(embeddings, labels, indices_tuple) + zero_shot(attributes, labels)``: a loss
    wrapper in the manner of PML's ``CrossBatchMemory``, with GSP's attribute vectors passed
    as an argument.

    The weights live in the parts: a :class:`MetricLoss` carries ``loss_weight`` (0.9 when
    built by :func:`build_metric_loss` with a zero-shot term), :class:`ZeroShotLoss` carries
    its own (0.1). The zero-shot term always uses this process's batch (whose two halves are the
    class-disjoint ones); only the metric loss gathers across processes (``MetricLoss(gather=)``),
    so under DDP the averaged gradient is that of the metric loss on the global batch plus the
    mean of the per-process zero-shot terms.

    Args:
        loss: the metric loss, called as ``loss(embeddings, labels, indices_tuple)``: a
            :class:`MetricLoss` or any PML loss.
        zero_shot: a :class:`ZeroShotLoss` (its class embeddings are parameters of this module:
            optimise ``wrapper.parameters()``).

    Shapes:
        embeddings (B, D), labels (B,), attributes (B, m) -> scalar.
    """

    def __init__(self, loss: nn.Module, zero_shot: ZeroShotLoss) -> None:
        super().__init__()
        self.loss = loss
        self.zero_shot = zero_shot

    def terms(
        self,
        embeddings: Tensor,
        labels: Tensor,
        attributes: Tensor,
        indices_tuple: tuple | None = None,
    ) -> dict[str, Tensor]:
        """The two terms, ``loss_metric`` and ``loss_zsr``, for logging them apart."""
        if attributes is None:
            raise ValueError(
                'ZeroShotLossWrapper: no attribute vectors; they come from a GSP pooler '
                "(neck.type='GSP' with MetricLearner, or PoolingEmbedder(pooler=dict(type='GSP'"
                ', ...)) with MetricLossOnlyWithAttributes); or drop the zero-shot term.'
            )
        labels = labels.to(embeddings.device)
        return {
            'loss_metric': self.loss(embeddings, labels, indices_tuple),
            'loss_zsr': self.zero_shot(attributes, labels.long()),
        }

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        attributes: Tensor,
        indices_tuple: tuple | None = None,
    ) -> Tensor:
        terms = self.terms(embeddings, labels, attributes, indices_tuple)
        return terms['loss_metric'] + terms['loss_zsr']
