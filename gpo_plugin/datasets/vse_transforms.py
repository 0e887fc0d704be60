"""Training-time augmentation and packing of VSE∞ samples (docs/vse.md#transforms-and-collation)."""

from __future__ import annotations

import numpy as np
import torch
from mmcv.transforms import BaseTransform

from gpo_plugin.registry import TRANSFORMS


@TRANSFORMS.register_module()
class RandomRegionDrop(BaseTransform):
    """Size augmentation: drop each region independently with ``drop_prob``.

    At least one region is always kept (a random one if all were drawn to drop).

    Args:
        drop_prob: probability of dropping each region. Defaults to 0.2.

    Shapes:
        ``results['regions']`` (R, D) -> (R', D), 1 <= R' <= R.
    """

    def __init__(self, drop_prob: float = 0.2) -> None:
        if not 0 <= drop_prob < 1:
            raise ValueError(f'RandomRegionDrop: drop_prob must be in [0, 1), got {drop_prob}.')
        self.drop_prob = drop_prob

    def transform(self, results: dict) -> dict:
        regions = results['regions']
        if len(regions) == 0:
            raise ValueError(
                f'RandomRegionDrop: image {results.get("img_idx", "?")} has no regions; every '
                'image needs at least one region feature.'
            )
        keep = np.random.rand(len(regions)) >= self.drop_prob
        if not keep.any():
            keep[np.random.randint(len(regions))] = True
        results['regions'] = regions[keep]
        return results


@TRANSFORMS.register_module()
class RandomWordAugment(BaseTransform):
    """Word-level caption augmentation of VSE∞.

    Each word is touched with probability ``prob``; a touched word is replaced by the
    mask token (fraction ``mask_frac``), by random tokens (``random_frac``) or deleted
    (the rest). With the defaults 10 % of words are masked, 2 % replaced, 8 % deleted.
    All pieces of a word change together; tokens with word id ``None`` ([CLS], [SEP],
    ``<start>``, ``<end>``) are never touched.

    Args:
        prob: probability of augmenting a word. Defaults to 0.2.
        mask_frac: share of augmented words masked. Defaults to 0.5.
        random_frac: share of augmented words replaced by random tokens. Defaults to 0.1.
    """

    def __init__(self, prob: float = 0.2, mask_frac: float = 0.5, random_frac: float = 0.1) -> None:
        if not (
            0 <= prob <= 1 and mask_frac >= 0 and random_frac >= 0 and mask_frac + random_frac <= 1
        ):
            raise ValueError(
                'RandomWordAugment: need 0 <= prob <= 1 and mask_frac + random_frac '
                f'<= 1, got prob={prob}, mask_frac={mask_frac}, '
                f'random_frac={random_frac}.'
            )
        self.prob, self.mask_frac, self.random_frac = prob, mask_frac, random_frac

    def transform(self, results: dict) -> dict:
        ids, word_ids = results['token_ids'], results['word_ids']
        words = sorted({w for w in word_ids if w is not None})
        draws = dict(zip(words, np.random.rand(len(words)), strict=True))
        out_ids, out_words = [], []
        for token, word in zip(ids, word_ids, strict=True):
            u = draws.get(word, 1.0) if word is not None else 1.0
            if u < self.prob:
                v = u / self.prob
                if v < self.mask_frac:
                    token = results['mask_id']
                elif v < self.mask_frac + self.random_frac:
                    token = int(np.random.randint(results['random_low'], results['vocab_size']))
                else:
                    continue  # deleted
            out_ids.append(token)
            out_words.append(word)
        results['token_ids'], results['word_ids'] = out_ids, out_words
        return results


@TRANSFORMS.register_module()
class PackVSEInputs(BaseTransform):
    """Pack a sample into ``inputs`` (tensors) and ``data_samples`` (indices).

    Output: ``dict(inputs=dict(regions=(R, D) float, tokens=(T,) long),
    data_samples=dict(img_idx=int, cap_idx=int))``.
    """

    def transform(self, results: dict) -> dict:
        regions = torch.as_tensor(np.ascontiguousarray(results['regions']), dtype=torch.float32)
        tokens = torch.as_tensor(results['token_ids'], dtype=torch.long)
        return dict(
            inputs=dict(regions=regions, tokens=tokens),
            data_samples=dict(img_idx=int(results['img_idx']), cap_idx=int(results['cap_idx'])),
        )
