"""Runner hooks and optimiser wrappers."""

from .atomic_checkpoint_hook import AtomicCheckpointHook, atomic_write  # noqa: F401
from .backbone_warmup_hook import BackboneWarmupHook  # noqa: F401
from .embedding_progress_hook import EmbeddingProgressHook  # noqa: F401
from .epoch_fraction_logger_hook import EpochFractionLoggerHook  # noqa: F401
from .hardest_negative_hook import HardestNegativeHook  # noqa: F401
from .inference_loops import InferenceTestLoop, InferenceValLoop  # noqa: F401
from .non_finite_loss_hook import NonFiniteLossHook  # noqa: F401
from .optim_wrappers import CPUBf16AmpOptimWrapper  # noqa: F401
from .pooling_weights_hook import PoolingWeightsHook  # noqa: F401
from .sample_seed_hook import SampleSeedHook  # noqa: F401
