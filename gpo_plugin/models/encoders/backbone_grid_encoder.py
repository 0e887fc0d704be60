"""Image encoder over a CNN's last feature map, VSE∞'s grid features (docs/vse.md)."""

from __future__ import annotations

import math

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from gpo_plugin.ops import length_mask
from gpo_plugin.registry import MODELS


def grid_keep_mask(drop_rate: Tensor, drop_seed: Tensor, num_vectors: int) -> Tensor:
    """Which grid vectors each image keeps, (B, N) bool, reproducible from the seeds.

    Vector k of image b is dropped when ``u_bk < drop_rate[b]``, with ``u_b`` drawn from
    a CPU ``torch.Generator`` seeded with ``drop_seed[b]`` (so it does not touch the
    global RNG and repeats exactly on resume). At least one vector is always kept.
    """
    rows = []
    for rate, seed in zip(drop_rate.tolist(), drop_seed.tolist(), strict=True):
        gen = torch.Generator().manual_seed(int(seed))
        u = torch.rand(num_vectors, generator=gen)
        keep = u >= rate
        if not keep.any():
            keep[u.argmax()] = True
        rows.append(keep)
    return torch.stack(rows)


def compact_sets(features: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """Move kept vectors to the front of each row, zero the rest.

    Shapes: features (B, N, C), keep (B, N) bool -> (B, N, C), lengths (B,).
    """
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    lengths = keep.sum(dim=1)
    gathered = features.gather(1, order.unsqueeze(-1).expand_as(features))
    valid = length_mask(lengths, features.shape[1]).unsqueeze(-1)
    return gathered * valid, lengths


@MODELS.register_module()
class BackboneGridEncoder(BaseModule):
    """Raw images -> backbone's last feature map -> H·W vectors -> Linear -> pooler.

    Any registered backbone works (mmpretrain's ``ResNet``, ``ResNeXt``,
    ``EfficientNet``, ..., or :class:`EfficientNetLite`); weights come from the
    backbone's ``init_cfg`` (``dict(type='Pretrained', checkpoint=LOCAL_FILE)``) or its
    own arguments. Sub-module names ``backbone``, ``fc``, ``gpool`` are the targets of
    the published VSE∞ grid checkpoints' conversion.

    Training recipe pieces that live here:

    - ``frozen_bn``: the backbone's BatchNorm layers stay in eval mode with frozen
      affine parameters (batches of 512 px images are too small for BN statistics);
    - :meth:`set_backbone_trainable` (called by ``BackboneWarmupHook``): a frozen
      backbone runs under ``no_grad``; BN parameters stay frozen with ``frozen_bn``;
    - grid size augmentation: in training, with ``drop_rate``/``drop_seed`` (B,) from
      ``GridDropParams`` in the pipeline, each grid vector is dropped with its image's
      rate and the lengths go to the pooler;
    - ``with_cp``: activation checkpointing of the backbone (memory for compute): per block
      for backbones with a ``with_cp`` switch (mmpretrain's ResNet/ResNeXt/EfficientNet,
      :class:`EfficientNetLite`), else around the whole backbone.

    Args:
        backbone: backbone config; its ``forward`` returns a tuple of feature maps.
        in_channels: channels C of the used feature map (2048 for ResNet-50/101/152 and
            ResNeXt-101, 1280 for EfficientNet-Lite0).
        embed_dim: joint embedding size. Defaults to 1024.
        pooling: config of the pooler. Defaults to ``dict(type='GPO')``.
        out_index: which of the backbone's outputs to use. Defaults to -1 (the last).
        frozen_bn: freeze the backbone's BatchNorm. Defaults to True.
        with_cp: activation checkpointing of the backbone in training. Defaults to False.

    Shapes:
        images (B, 3, H, W) normalised -> pooled (B, E) (not normalised).
    """

    def __init__(
        self,
        backbone: dict,
        in_channels: int = 2048,
        embed_dim: int = 1024,
        pooling: dict | None = None,
        out_index: int = -1,
        frozen_bn: bool = True,
        with_cp: bool = False,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.in_channels = in_channels
        self.fc = nn.Linear(in_channels, embed_dim)
        self.gpool = MODELS.build(pooling or dict(type='GPO'))
        self.out_index = out_index
        self.frozen_bn = frozen_bn
        self.backbone_trainable = True
        # Per-block checkpointing where the backbone offers it (the memory saving is there);
        # around the whole backbone otherwise.
        switches = [m for m in self.backbone.modules() if hasattr(m, 'with_cp')]
        if with_cp:
            for module in switches:
                module.with_cp = True
        self.with_cp = with_cp and not switches
        self._init_fc()
        if frozen_bn:
            for bn in self._backbone_norms():
                bn.requires_grad_(False)

    def _init_fc(self) -> None:
        # Xavier-uniform with zero bias, as VSE∞ initialises its image projection.
        bound = math.sqrt(6.0) / math.sqrt(self.fc.in_features + self.fc.out_features)
        nn.init.uniform_(self.fc.weight, -bound, bound)
        nn.init.zeros_(self.fc.bias)

    def _backbone_norms(self) -> list[nn.Module]:
        return [m for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]

    def train(self, mode: bool = True) -> BackboneGridEncoder:
        super().train(mode)
        if mode and self.frozen_bn:
            for bn in self._backbone_norms():
                bn.eval()
        return self

    def set_backbone_trainable(self, trainable: bool) -> None:
        """Freeze (no gradients, run under ``no_grad``) or unfreeze the backbone; frozen
        BatchNorm parameters stay frozen."""
        self.backbone_trainable = trainable
        frozen = {id(p) for bn in self._backbone_norms() for p in bn.parameters()}
        for param in self.backbone.parameters():
            param.requires_grad_(trainable and not (self.frozen_bn and id(param) in frozen))

    def grid_features(self, images: Tensor) -> Tensor:
        """The backbone's feature map as sets: (B, 3, H, W) -> (B, H'·W', C)."""
        if images.dim() != 4:
            raise ValueError(
                f'BackboneGridEncoder: images must be (B, 3, H, W), got {tuple(images.shape)}; '
                'region sets go to PrecompRegionEncoder.'
            )
        grad = self.backbone_trainable and torch.is_grad_enabled()
        with torch.set_grad_enabled(grad):
            if self.with_cp and grad and self.training:
                outs = checkpoint(self.backbone, images, use_reentrant=False)
            else:
                outs = self.backbone(images)
        fmap = outs[self.out_index] if isinstance(outs, tuple | list) else outs
        if fmap.dim() != 4 or fmap.shape[1] != self.in_channels:
            raise ValueError(
                f'BackboneGridEncoder: the backbone gives a map of shape {tuple(fmap.shape)}, '
                f'expected (B, {self.in_channels}, H, W); set `in_channels` (and `out_index`).'
            )
        return fmap.flatten(2).transpose(1, 2)

    def forward(
        self,
        images: Tensor,
        lengths: Tensor | None = None,
        drop_rate: Tensor | None = None,
        drop_seed: Tensor | None = None,
    ) -> Tensor:
        if lengths is not None:
            raise ValueError(
                'BackboneGridEncoder: raw images have no set lengths (got `lengths`); the '
                'grid size comes from the backbone.'
            )
        grid = self.grid_features(images)
        batch, num = grid.shape[:2]
        if self.training and drop_rate is not None:
            keep = grid_keep_mask(drop_rate, drop_seed, num).to(grid.device)
            grid, lengths = compact_sets(grid, keep)
        else:
            lengths = torch.full((batch,), num, dtype=torch.long, device=grid.device)
        features = self.fc(grid)
        features = features * length_mask(lengths, num).unsqueeze(-1)
        return self.gpool.pool_padded(features, lengths).pooled
