"""The joint-embedding head of VSE∞: optional projection, l2-norm, ranking loss."""

from __future__ import annotations

import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from gpo_plugin.registry import MODELS


@MODELS.register_module()
class VSEHead(BaseModule):
    """Map pooled image and caption features to the unit sphere and score them.

    VSE∞ projects features before pooling (inside the encoders), so the projections here
    default to identity; give ``img_in_channels``/``txt_in_channels`` and ``embed_dim``
    to add a linear projection after pooling instead.

    Args:
        loss: config of the ranking loss. Defaults to ``ContrastiveLoss``.
        embed_dim: joint embedding size (needed only with a projection).
        img_in_channels: pooled image feature size to project from, or None.
        txt_in_channels: pooled caption feature size to project from, or None.
        init_cfg: mmengine initialisation config.

    Shapes:
        ``forward``: img (B_i, C_i), txt (B_t, C_t) -> unit vectors (B_i, E), (B_t, E).
        ``loss``: img_emb (B, E), txt_emb (B, E) of matching pairs -> dict(loss=scalar).
    """

    def __init__(
        self,
        loss: dict | None = None,
        embed_dim: int | None = None,
        img_in_channels: int | None = None,
        txt_in_channels: int | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.loss_module = MODELS.build(loss or dict(type='ContrastiveLoss'))
        self.img_proj = self._projection(img_in_channels, embed_dim)
        self.txt_proj = self._projection(txt_in_channels, embed_dim)

    @staticmethod
    def _projection(in_channels: int | None, embed_dim: int | None) -> nn.Module:
        if in_channels is None:
            return nn.Identity()
        if embed_dim is None:
            raise ValueError('VSEHead: give `embed_dim` together with `*_in_channels`.')
        return nn.Linear(in_channels, embed_dim)

    def forward(self, img: Tensor, txt: Tensor) -> tuple[Tensor, Tensor]:
        return self.embed_image(img), self.embed_text(txt)

    def embed_image(self, img: Tensor) -> Tensor:
        """Pooled image features (B, C_i) -> unit vectors (B, E) (one branch alone)."""
        return F.normalize(self.img_proj(img), dim=-1)

    def embed_text(self, txt: Tensor) -> Tensor:
        """Pooled caption features (B, C_t) -> unit vectors (B, E) (one branch alone)."""
        return F.normalize(self.txt_proj(txt), dim=-1)

    def loss(self, img_emb: Tensor, txt_emb: Tensor) -> dict[str, Tensor]:
        return dict(loss=self.loss_module(img_emb, txt_emb))
