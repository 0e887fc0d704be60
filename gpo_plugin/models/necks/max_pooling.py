"""Max pooling over a (masked) set."""

from __future__ import annotations

import math

from torch import Tensor

from gpo_plugin.ops import length_mask
from gpo_plugin.registry import MODELS

from .base_set_pooling import BaseSetPooling
from .pooling_output import PoolingOutput


@MODELS.register_module()
class MaxPooling(BaseSetPooling):
    """Channel-wise maximum over the valid set elements (VSE∞'s best hand-picked
    pooler for region features).

    Shapes:
        ``pool``: features (B, L, D), lengths (B,) -> pooled (B, D), weights (B, N_max)
        over ranks, 1 at rank 0 and 0 elsewhere.
    """

    weights_over = 'rank'

    def pool_padded(self, features: Tensor, lengths: Tensor) -> PoolingOutput:
        max_len = int(lengths.max())
        valid = length_mask(lengths, max_len)
        pooled = features[:, :max_len].masked_fill(~valid.unsqueeze(-1), -math.inf).amax(dim=1)
        weights = features.new_zeros(valid.shape)
        weights[:, 0] = 1.0
        return PoolingOutput(pooled, weights, 'rank')
