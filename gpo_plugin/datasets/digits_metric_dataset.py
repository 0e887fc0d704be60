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

    With ``digit_size < size`` each digit is pasted at a random position of a ``size`` x
    ``size`` canvas, and ``clutter_strokes`` random line segments are drawn around it: a
    cluttered variant in which most of the grid is background, the setting GSP's feature
    selection is designed for. The layout is random but fixed (seeded by split and ``seed``).

    Args:
        split: ``'train'`` (digits 0-4, 901 images) or ``'test'`` (digits 5-9, 896 images).
        size: side of the image. Defaults to 32.
        digit_size: side of the upsampled (bilinear) digit; None means ``size``.
        clutter_strokes: random strokes drawn on the canvas. Defaults to 0.
        seed: seed of the placement and clutter. Defaults to 0.
        pipeline: transforms (the sample has ``img`` (size, size, 3) uint8 and ``gt_label``).
    """

    SPLIT_DIGITS = {'train': (0, 1, 2, 3, 4), 'test': (5, 6, 7, 8, 9)}

    def __init__(
        self,
        split: str = 'train',
        size: int = 32,
        digit_size: int | None = None,
        clutter_strokes: int = 0,
        seed: int = 0,
        pipeline=(),
        test_mode: bool | None = None,
        **kwargs,
    ) -> None:
        if split not in self.SPLIT_DIGITS:
            raise ValueError(
                f"DigitsMetricDataset: split must be 'train' or 'test', got {split!r}."
            )
        digit_size = size if digit_size is None else digit_size
        if not 0 < digit_size <= size:
            raise ValueError(
                f'DigitsMetricDataset: digit_size must lie in [1, size = {size}], got {digit_size}.'
            )
        self.split, self.size, self.digit_size = split, size, digit_size
        self.clutter_strokes, self.seed = clutter_strokes, seed
        digits = self.SPLIT_DIGITS[split]
        super().__init__(
            ann_file='',
            metainfo=dict(classes=tuple(str(d) for d in digits)),
            pipeline=pipeline,
            test_mode=split == 'test' if test_mode is None else test_mode,
            **kwargs,
        )

    def load_data_list(self) -> list[dict]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        wanted = self.SPLIT_DIGITS[self.split]
        rng = np.random.default_rng([self.seed, tuple(self.SPLIT_DIGITS).index(self.split)])
        data_list = []
        for image, target in zip(digits.images, digits.target, strict=True):
            if int(target) not in wanted:
                continue
            pixels = np.round(self._render(image / 16, rng) * 255).astype(np.uint8)
            label = wanted.index(int(target))
            data_list.append(dict(img=np.repeat(pixels[..., None], 3, axis=2), gt_label=label))
        return data_list

    def _render(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The digit (values in [0, 1]) upsampled, placed and cluttered: (size, size) in [0, 1]."""
        side = (self.digit_size, self.digit_size)
        digit = cv2.resize(image.astype(np.float32), side, interpolation=cv2.INTER_LINEAR)
        if self.digit_size == self.size and not self.clutter_strokes:
            return digit
        canvas = np.zeros((self.size, self.size), np.float32)
        for _ in range(self.clutter_strokes):
            start = rng.integers(0, self.size, 2)
            end = np.clip(start + rng.integers(-8, 9, 2), 0, self.size - 1)
            shade = float(rng.uniform(0.4, 1.0))
            cv2.line(canvas, tuple(int(v) for v in start), tuple(int(v) for v in end), shade, 2)
        y, x = rng.integers(0, self.size - self.digit_size + 1, 2)
        window = canvas[y : y + self.digit_size, x : x + self.digit_size]
        np.maximum(window, digit, out=window)
        return canvas
