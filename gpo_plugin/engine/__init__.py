"""Runner hooks."""

from .backbone_warmup_hook import BackboneWarmupHook  # noqa: F401
from .embedding_progress_hook import EmbeddingProgressHook  # noqa: F401
from .hardest_negative_hook import HardestNegativeHook  # noqa: F401
from .pooling_weights_hook import PoolingWeightsHook  # noqa: F401
