"""PML's ``embedder`` model on top of any of our poolers, and a trunk that keeps feature maps."""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from gpo_plugin.models.necks.base_set_pooling import BaseSetPooling
from gpo_plugin.models.necks.pooling_output import PoolingOutput
from gpo_plugin.registry import MODELS

TrunkOutput = Tensor | tuple | list | dict


class PoolingEmbedder(nn.Module):
    """Pools the trunk's local features into one embedding per image (PML's ``embedder``).

    The trunk gives (B, C, H, W) maps (a tuple of maps: the last one is pooled), or padded
    sets (B, L, C) with lengths (B,), as a ``(features, lengths)`` tuple or a dict with those
    keys. Poolers without a projection (average, max, GeM, GPO, k-max) are followed by a
    Linear C -> ``embed_dim``; GSP projects itself (its ``out_channels`` defaults to
    ``embed_dim``).

    Args:
        pooler: one of our poolers, an instance or a config dict (``dict(type='GSP', ...)``;
            ``in_channels`` / ``out_channels`` are filled in when the pooler takes them).
        in_channels: channels C of the trunk's features.
        embed_dim: embedding size D.
        normalize: l2-normalise the embeddings in eval mode (what PML's testers see). In
            training mode the loss gets them as they are and PML's distances normalise them
            (their default), the rule ``MetricLearningHead`` follows. Defaults to True.

    Shapes:
        forward: trunk output -> (B, D); with ``return_attributes=True`` also GSP's attribute
        vectors (B, m) (None for other poolers).
    """

    def __init__(
        self,
        pooler: BaseSetPooling | dict,
        in_channels: int,
        embed_dim: int,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(pooler, dict):
            pooler = MODELS.build(_fill_pooler_cfg(pooler, in_channels, embed_dim))
        if not isinstance(pooler, BaseSetPooling):
            raise TypeError(
                f"PoolingEmbedder: `pooler` must be one of gpo_plugin's poolers (an instance or "
                f"a config dict like dict(type='GSP', ...)), got {type(pooler).__name__}."
            )
        self.pooler = pooler
        pooled_dim = getattr(pooler, 'out_channels', None) or in_channels
        self.in_channels, self.embed_dim, self.normalize = in_channels, embed_dim, normalize
        self.projection = nn.Linear(pooled_dim, embed_dim) if pooled_dim != embed_dim else None

    def forward(self, trunk_output: TrunkOutput, return_attributes: bool = False):
        out = pool_trunk_output(self.pooler, trunk_output)
        embeddings = self.projection(out.pooled) if self.projection is not None else out.pooled
        if self.normalize and not self.training:  # the loss's distance normalises in training
            embeddings = F.normalize(embeddings, dim=1)
        return (embeddings, out.attributes) if return_attributes else embeddings


def pool_trunk_output(pooler: BaseSetPooling, trunk_output: TrunkOutput) -> PoolingOutput:
    """Pool a trunk's output (see :class:`PoolingEmbedder`) with ``pool_map`` or ``pool``."""
    features, lengths = _split_trunk_output(trunk_output)
    if features.dim() == 4 and lengths is None:
        return pooler.pool_map(features)
    return pooler.pool(features, lengths)


def _fill_pooler_cfg(cfg: dict, in_channels: int, embed_dim: int) -> dict:
    cfg = dict(cfg)
    cls = MODELS.get(cfg['type']) if isinstance(cfg.get('type'), str) else cfg.get('type')
    params = inspect.signature(cls).parameters if inspect.isclass(cls) else {}
    if 'in_channels' in params:
        cfg.setdefault('in_channels', in_channels)
    if 'out_channels' in params:
        cfg.setdefault('out_channels', embed_dim)
    return cfg


def _split_trunk_output(output: TrunkOutput) -> tuple[Tensor, Tensor | None]:
    if isinstance(output, dict):
        return output['features'], output.get('lengths')
    if isinstance(output, tuple | list):
        if len(output) == 2 and output[0].dim() == 3 and output[1].dim() == 1:
            return output[0], output[1]
        return output[-1], None
    return output, None


class FeatureMapTrunk(nn.Module):
    """A classifier without its global pooling and classification layers: images ->
    (B, C, H, W) maps (or (B, N, C) tokens for transformers).

    Use :func:`feature_map_trunk` to build it.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.kind, self.body = _strip_head(model)

    def forward(self, images: Tensor) -> Tensor:
        if self.kind == 'forward_features':
            return self.body.forward_features(images)
        out = self.body(images)
        return out[-1] if isinstance(out, tuple | list) else out


def feature_map_trunk(model: nn.Module) -> FeatureMapTrunk:
    """Turn a torchvision / timm classifier or an mmpretrain backbone into a PML ``trunk``
    returning feature maps.

    torchvision models lose their ``avgpool`` and ``fc``/``classifier`` (ResNets, RegNets) or
    keep only ``features`` (VGG, DenseNet, EfficientNet, ConvNeXt, MobileNet); timm models use
    ``forward_features``; mmpretrain backbones (tuple of maps) give their last map.
    """
    return FeatureMapTrunk(model)


_HEAD_NAMES = ('avgpool', 'fc', 'classifier', 'head', 'global_pool')


def _strip_head(model: nn.Module) -> tuple[str, Any]:
    if callable(getattr(model, 'forward_features', None)):  # timm
        return 'forward_features', model
    if isinstance(getattr(model, 'features', None), nn.Module) and hasattr(model, 'classifier'):
        return 'module', model.features
    names = [name for name, _ in model.named_children()]
    if 'fc' in names and 'avgpool' in names:  # torchvision ResNet / RegNet style
        kept = [(n, m) for n, m in model.named_children() if n not in _HEAD_NAMES]
        return 'module', nn.Sequential(OrderedDict(kept))
    if getattr(model, 'out_indices', None) is not None or not any(n in names for n in _HEAD_NAMES):
        return 'module', model  # mmpretrain backbone: already returns maps
    raise ValueError(
        f'feature_map_trunk: cannot find the feature part of {type(model).__name__} (no '
        '`forward_features`, `features`, or `avgpool` + `fc`); pass a model returning '
        '(B, C, H, W) maps as the PML trunk directly.'
    )
