"""Deep-metric-learning model: mmpretrain's ImageClassifier (backbone -> neck -> head) that also
hands the neck's attribute vectors (GSP) to the head for the zero-shot loss."""

from __future__ import annotations

from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.structures import DataSample
from torch import Tensor

from gpo_plugin.registry import MODELS

from .necks.base_set_pooling import BaseSetPooling


@MODELS.register_module()
class MetricLearner(ImageClassifier):
    """``ImageClassifier`` whose ``predict`` gives embeddings (``MetricLearningHead``) and whose
    ``loss`` hands the neck's attribute vectors to the head when it has a zero-shot loss: the
    neck pools the backbone's last map with ``pool_map`` and ``PoolingOutput.attributes`` goes
    to the head. A neck that declares no attributes (``gives_attributes``; GSP has them) is
    refused when the model is built.

    Same arguments as :class:`mmpretrain.models.ImageClassifier`; ``neck`` and ``head`` are
    required.
    """

    def __init__(self, backbone: dict, neck: dict, head: dict, **kwargs) -> None:
        super().__init__(backbone=backbone, neck=neck, head=head, **kwargs)
        pooler = isinstance(self.neck, BaseSetPooling)
        if getattr(self.head, 'needs_attributes', False) and not (
            pooler and self.neck.gives_attributes
        ):
            raise self._no_attributes_error()

    def _no_attributes_error(self) -> ValueError:
        return ValueError(
            f'MetricLearner: head.zero_shot_loss needs attribute vectors, but the '
            f'neck {type(self.neck).__name__} gives none; use '
            "neck=dict(type='GSP', ...) or remove head.zero_shot_loss."
        )

    def loss(self, inputs: Tensor, data_samples: list[DataSample]) -> dict:
        if not getattr(self.head, 'needs_attributes', False):
            return super().loss(inputs, data_samples)
        out = self.neck.pool_map(self.backbone(inputs)[-1])
        if out.attributes is None:
            raise self._no_attributes_error()
        return self.head.loss((out.pooled,), data_samples, attributes=(out.attributes,))
