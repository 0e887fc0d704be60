"""Losses: VSE++ contrastive, zero-shot regularisation, the PML bridge."""

from .contrastive_loss import ContrastiveLoss  # noqa: F401
from .pml_bridge import PML_COMPONENTS, build_pml  # noqa: F401
from .zero_shot_loss import ZeroShotLoss  # noqa: F401
