"""Image–text retrieval and metric-learning metrics."""

from .cxc import CxCAnnotationError, cxc_recalls  # noqa: F401
from .cxc_metric import VSECxCMetric  # noqa: F401
from .metric_learning_metric import MetricLearningMetric  # noqa: F401
from .retrieval_metric import VSERetrievalMetric, format_retrieval_table  # noqa: F401
from .video_retrieval_metric import VideoRetrievalMetric, format_video_table  # noqa: F401
