"""Runner hooks and optimiser wrappers."""

from .hardest_negative_hook import HardestNegativeHook  # noqa: F401
from .optim_wrappers import CPUBf16AmpOptimWrapper  # noqa: F401
from .pooling_weights_hook import PoolingWeightsHook  # noqa: F401
