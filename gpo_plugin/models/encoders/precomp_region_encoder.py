"""Image encoder over precomputed region features (BUTD), docs/vse.md#image-encoder."""

from __future__ import annotations

import math

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from gpo_plugin.ops import length_mask
from gpo_plugin.registry import MODELS

from ..utils.checks import check_set_input


class RegionMLP(nn.Module):
    """Linear -> BatchNorm1d -> ReLU -> Linear on a flat (M, C) batch of regions.

    Sub-module names (``layers.*``, ``bns.*``) follow the published VSE∞ checkpoints.
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [nn.Linear(in_channels, hidden), nn.Linear(hidden, out_channels)]
        )
        self.bns = nn.ModuleList([nn.BatchNorm1d(hidden)])

    def forward(self, x: Tensor) -> Tensor:
        first, second = self.layers
        hidden = torch.relu(self.bns[0](first(x)))
        return second(hidden)


@MODELS.register_module()
class PrecompRegionEncoder(BaseModule):
    """Region features -> Linear (+ MLP branch) -> pooler.

    ``fc`` is Xavier-uniform with zero bias; the MLP branch (Linear(C, E/2) -> BN -> ReLU
    -> Linear(E/2, E)) is added to it. BatchNorm statistics use the valid regions only.
    Parameter names (``fc``, ``mlp``, ``gpool``) match the VSE∞ checkpoints' ``img_enc``.

    Args:
        in_channels: region feature size C (2048 for BUTD).
        embed_dim: joint embedding size E. Defaults to 1024.
        mlp_hidden: hidden size of the MLP branch; ``None`` means E // 2; 0 disables it.
        pooling: config of the pooler. Defaults to ``dict(type='GPO')``.

    Shapes:
        regions (B, R, C), lengths (B,) -> pooled (B, E) (not normalised).
    """

    def __init__(
        self,
        in_channels: int = 2048,
        embed_dim: int = 1024,
        mlp_hidden: int | None = None,
        pooling: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.fc = nn.Linear(in_channels, embed_dim)
        bound = math.sqrt(6.0) / math.sqrt(in_channels + embed_dim)
        nn.init.uniform_(self.fc.weight, -bound, bound)
        nn.init.zeros_(self.fc.bias)
        hidden = embed_dim // 2 if mlp_hidden is None else mlp_hidden
        self.mlp = RegionMLP(in_channels, hidden, embed_dim) if hidden else None
        self.gpool = MODELS.build(pooling or dict(type='GPO'))

    def embed_regions(self, regions: Tensor, lengths: Tensor) -> Tensor:
        """Per-region embeddings (B, R, E), zero at padded positions; ``lengths`` already
        checked (:meth:`forward`)."""
        if regions.shape[-1] != self.in_channels:
            raise ValueError(
                f'PrecompRegionEncoder: regions have {regions.shape[-1]} channels, '
                f'the config sets in_channels={self.in_channels} (shape '
                f'{tuple(regions.shape)}); make them agree.'
            )
        valid = length_mask(lengths, regions.shape[1])
        flat = regions[valid]
        out = self.fc(flat)
        if self.mlp is not None:
            out = out + self.mlp(flat)
        # out's dtype, not the regions': under autocast (--amp) the layers return float16/bf16.
        features = out.new_zeros(*regions.shape[:2], out.shape[-1])
        features[valid] = out
        return features

    def forward(self, regions: Tensor, lengths: Tensor | None = None) -> Tensor:
        lengths = check_set_input(regions, lengths, 'PrecompRegionEncoder')
        return self.gpool.pool_padded(self.embed_regions(regions, lengths), lengths).pooled
