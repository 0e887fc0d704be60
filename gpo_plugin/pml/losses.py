"""The metric-learning core for PML users: the same loss classes and builder as
``MetricLearningHead`` (they live in ``gpo_plugin.models.losses``; nothing is re-implemented
here)."""

from gpo_plugin.models.losses import MetricLoss, ZeroShotLossWrapper, build_metric_loss

__all__ = ['MetricLoss', 'ZeroShotLossWrapper', 'build_metric_loss']
