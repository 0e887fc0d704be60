"""Deep-metric-learning model: mmpretrain's ImageClassifier (backbone -> neck -> head) that also
hands the neck's attribute vectors (GSP) to the head for the zero-shot loss."""

from __future__ import annotations

from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.structures import DataSample
from torch import Tensor

from gpo_plugin.registry import MODELS


@MODELS.register_module()
class MetricLearner(ImageClassifier):
    """``ImageClassifier`` whose ``predict`` gives embeddings (``MetricLearningHead``) and whose
    ``loss`` asks the neck for attribute vectors when the head has a zero-shot loss: a neck
    offers them through ``pool_map_full(map) -> (pooled, attributes, weights)`` (GSP does).

    Same arguments as :class:`mmpretrain.models.ImageClassifier`; ``neck`` and ``head`` are
    required.
    """

    def __init__(self, backbone: dict, neck: dict, head: dict, **kwargs) -> None:
        super().__init__(backbone=backbone, neck=neck, head=head, **kwargs)
        if getattr(self.head, 'needs_attributes', False) and not self.neck_gives_attributes:
            raise ValueError(
                f'MetricLearner: head.zero_shot_loss needs attribute vectors, but the '
                f'neck {type(self.neck).__name__} gives none; use '
                "neck=dict(type='GSP', ...) or remove head.zero_shot_loss."
            )

    @property
    def neck_gives_attributes(self) -> bool:
        return callable(getattr(self.neck, 'pool_map_full', None))

    def loss(self, inputs: Tensor, data_samples: list[DataSample]) -> dict:
        if not getattr(self.head, 'needs_attributes', False):
            return super().loss(inputs, data_samples)
        pooled, attributes, _ = self.neck.pool_map_full(self.backbone(inputs)[-1])
        return self.head.loss((pooled,), data_samples, attributes=(attributes,))
