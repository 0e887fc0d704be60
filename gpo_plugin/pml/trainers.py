"""PML's MetricLossOnly trainer, feeding GSP's attribute vectors to the zero-shot loss."""

from __future__ import annotations

from pytorch_metric_learning.trainers import MetricLossOnly

from .losses import find_zero_shot_wrapper


class MetricLossOnlyWithAttributes(MetricLossOnly):
    """``MetricLossOnly`` whose embedder also returns GSP's attribute vectors when the metric
    loss is (or wraps) a :class:`ZeroShotLossWrapper`; with any other loss it is exactly
    ``MetricLossOnly``. Same constructor as PML's; the embedder must be a
    :class:`PoolingEmbedder` over GSP when the zero-shot term is used.
    """

    def calculate_loss(self, curr_batch):
        wrapper = find_zero_shot_wrapper(self.loss_funcs.get('metric_loss'))
        if wrapper is None:
            return super().calculate_loss(curr_batch)
        data, labels = curr_batch
        embeddings, attributes = self.models['embedder'](
            self.get_trunk_output(data), return_attributes=True
        )
        if attributes is None:
            raise ValueError(
                'MetricLossOnlyWithAttributes: the zero-shot loss needs attribute vectors, which '
                "only GSP gives; use PoolingEmbedder(pooler=dict(type='GSP', ...)) or a plain "
                'PML loss instead of ZeroShotLossWrapper.'
            )
        indices_tuple = self.maybe_mine_embeddings(embeddings, labels)
        wrapper.set_attributes(attributes)
        self.losses['metric_loss'] = self.maybe_get_metric_loss(embeddings, labels, indices_tuple)
