"""Image transforms of the grid-feature path (VSE∞ raw images), mmcv-style."""

from __future__ import annotations

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform, LoadImageFromFile

from gpo_plugin.registry import TRANSFORMS


@TRANSFORMS.register_module()
class LoadVSEImage(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` whose failures name the file.

    A missing, empty or undecodable image stops with ``OSError`` naming ``img_path``
    (mmcv's own loader raises a bare assertion for undecodable bytes). Arguments as
    ``LoadImageFromFile`` (BGR ``uint8`` by default).
    """

    def transform(self, results: dict) -> dict:
        path = results.get('img_path')
        try:
            out = super().transform(results)
        except Exception as err:  # noqa: BLE001 - any reader failure becomes one named error
            raise OSError(
                f'LoadVSEImage: cannot read image {path} ({type(err).__name__}: {err}); check '
                'the file, or remove it from the caption files / Karpathy JSON.'
            ) from None
        if out is None or out.get('img') is None:
            raise OSError(f'LoadVSEImage: cannot read image {path}.')
        return out


@TRANSFORMS.register_module()
class RandomSideRatioCrop(BaseTransform):
    """Crop a random window whose sides are ``r`` times the image's, ``r ~ U(min, max)``.

    VSE∞'s raw-image training crop (``r ~ U(0.6, 1)``, the same ratio for both sides, a
    uniformly placed window), followed in the configs by mmcv's ``Resize`` to 512 x 512
    and ``RandomFlip``. Draws from ``np.random``.

    Args:
        ratio_range: (min, max) side ratio. Defaults to (0.6, 1.0).
    """

    def __init__(self, ratio_range: tuple[float, float] = (0.6, 1.0)) -> None:
        low, high = ratio_range
        if not 0 < low <= high <= 1:
            raise ValueError(
                f'RandomSideRatioCrop: need 0 < min <= max <= 1, got ratio_range={ratio_range}.'
            )
        self.ratio_range = (low, high)

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        ratio = np.random.uniform(*self.ratio_range)
        ch, cw = max(1, int(h * ratio)), max(1, int(w * ratio))
        y0 = np.random.randint(0, h - ch + 1)
        x0 = np.random.randint(0, w - cw + 1)
        results['img'] = mmcv.imcrop(img, np.array([x0, y0, x0 + cw - 1, y0 + ch - 1]))
        results['img_shape'] = results['img'].shape[:2]
        return results
