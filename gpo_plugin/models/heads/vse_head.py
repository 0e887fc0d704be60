"""The joint-embedding head of VSE∞: optional projection, l2-norm, ranking loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from gpo_plugin.registry import MODELS
from gpo_plugin.utils.dist import gather_with_grad


def unit(x: Tensor) -> Tensor:
    """l2-normalise the rows, in float32 at least (under autocast too)."""
    return F.normalize(x.to(torch.promote_types(x.dtype, torch.float32)), dim=-1)


@MODELS.register_module()
class VSEHead(BaseModule):
    """Map pooled image and caption features to the unit sphere and score them.

    VSE∞ projects features before pooling (inside the encoders), so the projections here
    default to identity; give ``img_in_channels``/``txt_in_channels`` and ``embed_dim``
    to add a linear projection after pooling instead.

    Args:
        loss: config of the ranking loss. Defaults to ``VSEContrastiveLoss``.
        embed_dim: joint embedding size (needed only with a projection).
        img_in_channels: pooled image feature size to project from, or None.
        txt_in_channels: pooled caption feature size to project from, or None.
        global_batch: in a multi-process run, gather the embeddings of every rank before the
            loss (gradient flowing back to each rank's own part), so negatives, hardest ones
            included, come from the global batch. Every rank then computes the loss of the
            global batch, the value one process gets at that batch; DDP's gradient average
            reproduces that process's gradients (see :func:`gather_with_grad`). Defaults
            to True; no effect in a single process.
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
        global_batch: bool = True,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.global_batch = global_batch
        self.loss_module = MODELS.build(loss or dict(type='VSEContrastiveLoss'))
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
        return unit(self.img_proj(img))

    def embed_text(self, txt: Tensor) -> Tensor:
        """Pooled caption features (B, C_t) -> unit vectors (B, E) (one branch alone)."""
        return unit(self.txt_proj(txt))

    def loss(self, img_emb: Tensor, txt_emb: Tensor) -> dict[str, Tensor]:
        if self.global_batch:
            img_emb, txt_emb = gather_with_grad(img_emb), gather_with_grad(txt_emb)
        return dict(loss=self.loss_module(img_emb, txt_emb))
