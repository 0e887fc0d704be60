"""Generalized-mean (GeM) pooling over a (masked) set."""

from __future__ import annotations

from mmpretrain.models.necks import GeneralizedMeanPooling
from torch import Tensor

from gpo_plugin.registry import MODELS

from ..utils.set_ops import length_mask
from .base_set_pooling import BaseSetPooling


@MODELS.register_module()
class GeMPooling(BaseSetPooling):
    """GeM pooling, (mean of clamp(x, eps)^p)^(1/p) over the valid set elements.

    Wraps mmpretrain's ``GeneralizedMeanPooling``: maps are pooled by it directly, and
    sets share its exponent ``p`` (learnable when ``p_trainable``).

    Args:
        p: the exponent. Defaults to 3.
        eps: lower clamp of the features. Defaults to 1e-6.
        clamp: clamp ``p`` to at least 1. Defaults to True.
        p_trainable: learn ``p``. Defaults to True.

    Shapes:
        ``pool``: features (B, L, D), lengths (B,) -> pooled (B, D), weights ``None``.
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
        self.gem = GeneralizedMeanPooling(p=p, eps=eps, clamp=clamp, p_trainable=p_trainable)

    def pool_checked(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, None]:
        max_len = int(lengths.max())
        p = self.gem.p.clamp(min=1) if self.gem.clamp else self.gem.p
        valid = length_mask(lengths, max_len).unsqueeze(-1)
        powered = features[:, :max_len].clamp(min=self.gem.eps).pow(p) * valid
        mean = powered.sum(dim=1) / lengths.unsqueeze(1).to(features.dtype)
        return mean.pow(1.0 / p), None

    def pool_checked_map(self, feature_map: Tensor) -> Tensor:
        return self.gem(feature_map)
