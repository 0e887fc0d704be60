"""Heads: VSE joint embedding, metric learning with PML losses."""

from .metric_learning_head import MetricLearningHead  # noqa: F401
from .vse_head import VSEHead  # noqa: F401
