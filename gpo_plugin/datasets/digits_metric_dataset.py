"""scikit-learn's handwritten digits as a class-disjoint metric-learning task (the demo data)."""

from __future__ import annotations

import cv2
import numpy as np
from mmpretrain.datasets import BaseDataset

from gpo_plugin.registry import DATASETS


@DATASETS.register_module()
class DigitsMetricDataset(BaseDataset):
    """The 1,797 real 8x8 digit images of ``sklearn.datasets.load_digits``, upsampled; classes
    0-4 for training and 5-9 for testing (class-disjoint, like CUB). Labels are remapped to
    0..4 in both splits; ``classes`` holds the digits.

    Args:
        split: ``'train'`` (digits 0-4, 901 images) or ``'test'`` (digits 5-9, 896 images).
        size: side of the upsampled (bilinear) image. Defaults to 32.
        pipeline: transforms (the sample has ``img`` (size, size, 3) uint8 and ``gt_label``).
    """

    SPLIT_DIGITS = {'train': (0, 1, 2, 3, 4), 'test': (5, 6, 7, 8, 9)}

    def __init__(self, split: str = 'train', size: int = 32, pipeline=(),
                 test_mode: bool | None = None, **kwargs) -> None:
        if split not in self.SPLIT_DIGITS:
            raise ValueError(f"DigitsMetricDataset: split must be 'train' or 'test', got {split!r}.")
        self.split, self.size = split, size
        digits = self.SPLIT_DIGITS[split]
        super().__init__(ann_file='', metainfo=dict(classes=tuple(str(d) for d in digits)),
                         pipeline=pipeline, test_mode=split == 'test' if test_mode is None
                         else test_mode, **kwargs)

    def load_data_list(self) -> list[dict]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        wanted = self.SPLIT_DIGITS[self.split]
        data_list = []
        for image, target in zip(digits.images, digits.target, strict=True):
            if int(target) not in wanted:
                continue
            pixels = np.round(image * (255 / 16)).astype(np.uint8)
            pixels = cv2.resize(pixels, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
            data_list.append(dict(img=np.repeat(pixels[..., None], 3, axis=2),
                                  gt_label=wanted.index(int(target))))
        return data_list
