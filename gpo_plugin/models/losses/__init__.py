"""Losses: VSE++ contrastive and zero-shot regularisation (PML's losses come through
``gpo_plugin.registry.PML_COMPONENTS``)."""

from .contrastive_loss import ContrastiveLoss  # noqa: F401
from .zero_shot_loss import ZeroShotLoss  # noqa: F401
