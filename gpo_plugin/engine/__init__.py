"""Runner hooks."""

from .hardest_negative_hook import HardestNegativeHook  # noqa: F401
from .pooling_weights_hook import PoolingWeightsHook  # noqa: F401
