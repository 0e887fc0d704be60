"""The modality-neutral input contract of :class:`VSERetriever` and its preprocessor."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.model import BaseDataPreprocessor
from torch import Tensor

from gpo_plugin.registry import MODELS

VSE_INPUT_KEYS = ('img', 'img_lengths', 'txt', 'txt_lengths', 'img_drop_rate', 'img_drop_seed')
"""Keys of a VSE batch's ``inputs``, the names the samples carry from the dataset on:
image side (region/frame sets or pixels), its set lengths (absent for pixels), text side
(token ids) and its lengths; ``img_drop_rate`` / ``img_drop_seed`` (B,) are the optional
grid size augmentation (``GridDropParams``)."""


def check_vse_inputs(inputs: dict) -> dict:
    """``inputs`` unchanged if it is a dict of :data:`VSE_INPUT_KEYS`; else a named error."""
    if not isinstance(inputs, dict):
        raise TypeError(
            f'VSE inputs must be a dict with keys {VSE_INPUT_KEYS}, got {type(inputs).__name__}; '
            "build the dataloader with collate_fn=dict(type='vse_collate')."
        )
    unknown = sorted(set(inputs) - set(VSE_INPUT_KEYS))
    if unknown:
        raise KeyError(
            f'VSE inputs have unknown keys {unknown}; the keys are {VSE_INPUT_KEYS} (region '
            "sets and images are 'img', token ids 'txt'), as PackVSEInputs and vse_collate "
            'make them.'
        )
    return inputs


@MODELS.register_module()
class VSEDataPreprocessor(BaseDataPreprocessor):
    """Move a ``vse_collate`` batch to the device; normalise raw images.

    Region sets and token ids pass through unchanged (only moved). A raw image batch
    (``img`` of shape (B, 3, H, W), any dtype, e.g. uint8 from ``PackVSEInputs``) becomes
    float, optionally BGR -> RGB (mmcv loads BGR), then ``(img - mean) / std`` per
    channel, as mmpretrain's ``ClsDataPreprocessor`` does.

    Args:
        mean: per-channel mean in the channel order after ``to_rgb`` (0-255 scale), or
            None for no normalisation.
        std: per-channel std, given together with ``mean``.
        to_rgb: flip BGR -> RGB before normalising. Defaults to False.
        non_blocking: non-blocking host-to-device copies.
    """

    def __init__(
        self,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        to_rgb: bool = False,
        non_blocking: bool = False,
    ) -> None:
        super().__init__(non_blocking)
        if (mean is None) != (std is None):
            raise ValueError('VSEDataPreprocessor: give both `mean` and `std`, or neither.')
        self._enable_normalize = mean is not None
        if self._enable_normalize:
            if len(mean) != 3 or len(std) != 3:
                raise ValueError(
                    f'VSEDataPreprocessor: mean and std need 3 values (RGB), got {mean}, {std}.'
                )
            self.register_buffer('mean', torch.tensor(mean).view(-1, 1, 1), False)
            self.register_buffer('std', torch.tensor(std).view(-1, 1, 1), False)
        self.to_rgb = to_rgb

    def normalize_images(self, img: Tensor) -> Tensor:
        """(B, 3, H, W) any dtype -> float, channel-flipped and normalised as configured."""
        if img.dim() != 4 or img.shape[1] != 3:
            raise ValueError(
                f'VSEDataPreprocessor: raw images must be (B, 3, H, W), got {tuple(img.shape)}.'
            )
        img = img.float()
        if self.to_rgb:
            img = img.flip(1)
        if self._enable_normalize:
            img = (img - self.mean) / self.std
        return img

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = dict(check_vse_inputs(data['inputs']))
        img = inputs.get('img')
        if isinstance(img, Tensor) and img.dim() == 4:
            inputs['img'] = self.normalize_images(img)
        return dict(inputs=inputs, data_samples=data.get('data_samples'))
