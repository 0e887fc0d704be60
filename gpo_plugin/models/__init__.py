from . import backbones, data_preprocessors, encoders, heads, losses, necks  # noqa: F401  (importing registers the modules)
from .metric_learner import MetricLearner  # noqa: F401
from .vse_retriever import VSERetriever  # noqa: F401
