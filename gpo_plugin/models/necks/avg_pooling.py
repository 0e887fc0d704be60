"""Average pooling over a (masked) set."""

from __future__ import annotations

from mmpretrain.models.necks import GlobalAveragePooling
from torch import Tensor

from gpo_plugin.ops import length_mask
from gpo_plugin.registry import MODELS

from .base_set_pooling import BaseSetPooling
from .pooling_output import PoolingOutput


@MODELS.register_module()
class AvgPooling(BaseSetPooling):
    """Mean of the valid set elements. Maps are pooled by mmpretrain's
    ``GlobalAveragePooling``.

    Shapes:
        ``pool``: features (B, L, D), lengths (B,) -> pooled (B, D), weights (B, N_max)
        over ranks, 1/N at each of the N valid ranks.
        ``pool_map``: (B, C, H, W) -> pooled (B, C), weights (B, H*W) equal to 1/(H*W).
    """

    weights_over = 'rank'

    def __init__(self, init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.global_pool = GlobalAveragePooling(dim=2)

    def pool_padded(self, features: Tensor, lengths: Tensor) -> PoolingOutput:
        max_len = int(lengths.max())
        valid = length_mask(lengths, max_len)
        weights = valid.to(features.dtype) / lengths.unsqueeze(1).to(features.dtype)
        # Zero the padding before the sum: NaN/inf there would survive a multiplication by 0.
        kept = features[:, :max_len].masked_fill(~valid.unsqueeze(-1), 0)
        pooled = (kept * weights.unsqueeze(-1)).sum(dim=1)
        return PoolingOutput(pooled, weights, 'rank')

    def pool_grid(self, feature_map: Tensor) -> PoolingOutput:
        batch, _, height, width = feature_map.shape
        weights = feature_map.new_full((batch, height * width), 1 / (height * width))
        return PoolingOutput(self.global_pool(feature_map), weights, 'rank')
