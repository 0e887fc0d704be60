"""PML's MetricLossOnly trainer, passing GSP's attribute vectors to the zero-shot loss."""

from __future__ import annotations

from pytorch_metric_learning.trainers import MetricLossOnly

from gpo_plugin.models.losses import ZeroShotLossWrapper


class MetricLossOnlyWithAttributes(MetricLossOnly):
    """``MetricLossOnly`` that calls a :class:`ZeroShotLossWrapper` in
    ``loss_funcs['metric_loss']`` with GSP's attribute vectors as its ``attributes`` argument;
    with any other loss it is exactly ``MetricLossOnly``. Same constructor as PML's; the
    embedder must be a :class:`PoolingEmbedder` over GSP when the zero-shot term is used.

    For several processes do not wrap the loss in PML's ``DistributedLossWrapper`` (it cannot
    pass the attributes): ``build_metric_loss(..., gather=None)`` gathers the metric loss
    across processes itself.
    """

    def calculate_loss(self, curr_batch):
        loss = self.loss_funcs.get('metric_loss')
        if not isinstance(loss, ZeroShotLossWrapper):
            return super().calculate_loss(curr_batch)
        data, labels = curr_batch
        embeddings, attributes = self.models['embedder'](
            self.get_trunk_output(data), return_attributes=True
        )
        if attributes is None:
            raise ValueError(
                'MetricLossOnlyWithAttributes: the zero-shot loss needs attribute vectors, which '
                "only GSP gives; use PoolingEmbedder(pooler=dict(type='GSP', ...)) or build the "
                'loss without zero_shot.'
            )
        indices_tuple = self.maybe_mine_embeddings(embeddings, labels)
        self.losses['metric_loss'] = (
            loss(embeddings, labels, attributes, indices_tuple)
            if self.loss_weights.get('metric_loss', 0) > 0
            else 0
        )
