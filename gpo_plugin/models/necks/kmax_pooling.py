"""K-max pooling: the mean of the K largest values of each channel."""

from __future__ import annotations

import torch
from torch import Tensor

from gpo_plugin.ops import length_mask, sort_channels_descending, weighted_sum_sorted
from gpo_plugin.registry import MODELS

from .base_set_pooling import BaseSetPooling
from .pooling_output import PoolingOutput


@MODELS.register_module()
class KMaxPooling(BaseSetPooling):
    """Average of the top-K values per channel, K clipped to each set's size
    (VSE∞'s best hand-picked pooler for grid features, with K = 20).

    Args:
        k: number of top values averaged per channel. Defaults to 20.

    Shapes:
        ``pool``: features (B, L, D), lengths (B,) -> pooled (B, D), weights (B, N_max)
        over ranks, 1/min(K, N) at the first min(K, N) ranks and 0 elsewhere.
    """

    weights_over = 'rank'

    def __init__(self, k: int = 20, init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(k, int) or k < 1:
            raise ValueError(f'KMaxPooling: `k` must be a positive integer, got {k!r}.')
        self.k = k

    def pool_padded(self, features: Tensor, lengths: Tensor) -> PoolingOutput:
        kept = torch.clamp(lengths, max=self.k)
        top = sort_channels_descending(features, lengths, top=self.k)  # (B, D, min(K, N_max))
        weights = length_mask(kept, top.shape[-1]).to(features.dtype) / kept.unsqueeze(1)
        pooled = weighted_sum_sorted(top, weights)
        # Report weights over all N_max sorted positions, zero past the top K.
        padding = int(lengths.max()) - top.shape[-1]
        return PoolingOutput(pooled, torch.nn.functional.pad(weights, (0, padding)), 'rank')
