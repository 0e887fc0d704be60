"""Generalized-mean (GeM) pooling over a (masked) set."""

from __future__ import annotations

import math

from mmpretrain.models.necks import GeneralizedMeanPooling
from torch import Tensor

from gpo_plugin.ops import length_mask
from gpo_plugin.registry import MODELS

from .base_set_pooling import BaseSetPooling
from .pooling_output import PoolingOutput


@MODELS.register_module()
class GeMPooling(BaseSetPooling):
    """GeM pooling, (mean of clamp(x, eps)^p)^(1/p) over the valid set elements.

    Wraps mmpretrain's ``GeneralizedMeanPooling``: maps are pooled by it directly, and
    sets share its exponent ``p`` (learnable when ``p_trainable``) and its meaning of
    ``clamp``, so a map and the set of its grid vectors give the same output.

    Args:
        p: the initial exponent, finite and >= 1 (mmpretrain's condition); a trainable
            ``p`` may drift below 1 during training, and both input forms follow it.
            Defaults to 3.
        eps: lower clamp of the features (> 0). Defaults to 1e-6.
        clamp: clamp the features to at least ``eps`` before the power (mmpretrain's
            meaning). Without it, negative features give NaN for fractional ``p``.
            Defaults to True.
        p_trainable: learn ``p``. Defaults to True.

    Shapes:
        ``pool``: features (B, L, D), lengths (B,) -> pooled (B, D), weights ``None`` (GeM
        is not a weighted sum). ``pool_map``: (B, C, H, W) -> pooled (B, C), weights ``None``.
    """

    def __init__(
        self,
        p: float = 3.0,
        eps: float = 1e-6,
        clamp: bool = True,
        p_trainable: bool = True,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if not (math.isfinite(p) and p >= 1 and math.isfinite(eps) and eps > 0):
            raise ValueError(
                f'GeMPooling: need a finite p >= 1 (as mmpretrain) and eps > 0, got p={p}, '
                f'eps={eps}.'
            )
        self.gem = GeneralizedMeanPooling(p=p, eps=eps, clamp=clamp, p_trainable=p_trainable)

    def pool_padded(self, features: Tensor, lengths: Tensor) -> PoolingOutput:
        max_len = int(lengths.max())
        p = self.gem.p
        padding = ~length_mask(lengths, max_len).unsqueeze(-1)
        x = features[:, :max_len]
        if self.gem.clamp:
            x = x.clamp(min=self.gem.eps)
        # Padding becomes 1 before the power (1^p is finite for any p) and 0 after it, so
        # NaN/inf/huge padding never reaches the sum, nor its gradient.
        powered = x.masked_fill(padding, 1).pow(p).masked_fill(padding, 0)
        mean = powered.sum(dim=1) / lengths.unsqueeze(1).to(features.dtype)
        return PoolingOutput(mean.pow(1.0 / p))

    def pool_grid(self, feature_map: Tensor) -> PoolingOutput:
        return PoolingOutput(self.gem(feature_map))
