"""Losses: the VSE++ ranking loss, GSP's zero-shot regularisation, and the metric-learning
core shared by ``MetricLearningHead`` and the PML side (PML's own losses come through
``gpo_plugin.registry.PML_COMPONENTS``)."""

from .build_metric_loss import build_metric_loss
from .contrastive_loss import ContrastiveLoss, VSEContrastiveLoss
from .metric_loss import MetricLoss
from .zero_shot_loss import ZeroShotLoss
from .zero_shot_loss_wrapper import ZeroShotLossWrapper

__all__ = [
    'ContrastiveLoss',
    'MetricLoss',
    'VSEContrastiveLoss',
    'ZeroShotLoss',
    'ZeroShotLossWrapper',
    'build_metric_loss',
]
