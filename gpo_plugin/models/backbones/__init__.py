"""Image backbones not in mmpretrain (any mmpretrain backbone works as well)."""

from .efficientnet_lite import EFFICIENTNET_LITE0_WEIGHTS, EfficientNetLite  # noqa: F401
