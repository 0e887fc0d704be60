"""Training-time augmentation and packing of VSE∞ samples (docs/vse.md#transforms-and-collation)."""

from __future__ import annotations

import numpy as np
import torch
from mmcv.transforms import BaseTransform

from gpo_plugin.registry import TRANSFORMS

from .text_tokenizers import build_caption_tokenizer


@TRANSFORMS.register_module()
class TokenizeCaption(BaseTransform):
    """Tokenise ``results['caption']``: the head of every VSE pipeline.

    Datasets return the caption string; this step turns it into the token ids the text
    encoder reads (``txt``) and the word each token belongs to (``word_ids``, for
    :class:`RandomWordAugment`). It is the only place a pipeline tokenises.

    Args:
        tokenizer: ``dict(type='VocabTokenizer', vocab_file=...)``,
            ``dict(type='HFTokenizer', path=...)`` or a built tokenizer.

    Shapes:
        ``results['caption']`` str -> ``results['txt']`` (T,) ints and
        ``results['word_ids']`` (T,) word index or None (special tokens).
    """

    def __init__(self, tokenizer: dict) -> None:
        self.tokenizer = build_caption_tokenizer(tokenizer)

    def transform(self, results: dict) -> dict:
        results['txt'], results['word_ids'] = self.tokenizer.encode(results['caption'])
        return results


@TRANSFORMS.register_module()
class RandomRegionDrop(BaseTransform):
    """Size augmentation: drop each region independently with ``drop_prob``.

    At least one region is always kept (a random one if all were drawn to drop).

    Args:
        drop_prob: probability of dropping each region. Defaults to 0.2.

    Shapes:
        ``results['img']`` (R, D) region or frame set -> (R', D), 1 <= R' <= R.
    """

    def __init__(self, drop_prob: float = 0.2) -> None:
        if not 0 <= drop_prob < 1:
            raise ValueError(f'RandomRegionDrop: drop_prob must be in [0, 1), got {drop_prob}.')
        self.drop_prob = drop_prob

    def transform(self, results: dict) -> dict:
        regions = results['img']
        if len(regions) == 0:
            raise ValueError(
                f'RandomRegionDrop: image {results.get("img_idx", "?")} has no regions; every '
                'image needs at least one region feature.'
            )
        keep = np.random.rand(len(regions)) >= self.drop_prob
        if not keep.any():
            keep[np.random.randint(len(regions))] = True
        results['img'] = regions[keep]
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
        tokenizer: the tokenizer of the pipeline's :class:`TokenizeCaption` (config or
            built); gives the mask id and the range random tokens are drawn from.
        prob: probability of augmenting a word. Defaults to 0.2.
        mask_frac: share of augmented words masked. Defaults to 0.5.
        random_frac: share of augmented words replaced by random tokens. Defaults to 0.1.
    """

    def __init__(
        self, tokenizer: dict, prob: float = 0.2, mask_frac: float = 0.5, random_frac: float = 0.1
    ) -> None:
        if not (
            0 <= prob <= 1 and mask_frac >= 0 and random_frac >= 0 and mask_frac + random_frac <= 1
        ):
            raise ValueError(
                'RandomWordAugment: need 0 <= prob <= 1 and mask_frac + random_frac '
                f'<= 1, got prob={prob}, mask_frac={mask_frac}, '
                f'random_frac={random_frac}.'
            )
        self.prob, self.mask_frac, self.random_frac = prob, mask_frac, random_frac
        tok = build_caption_tokenizer(tokenizer)
        self.mask_id, self.random_low, self.vocab_size = tok.mask_id, tok.random_low, tok.vocab_size

    def transform(self, results: dict) -> dict:
        ids, word_ids = results['txt'], results['word_ids']
        words = sorted({w for w in word_ids if w is not None})
        draws = dict(zip(words, np.random.rand(len(words)), strict=True))
        out_ids, out_words = [], []
        for token, word in zip(ids, word_ids, strict=True):
            u = draws.get(word, 1.0) if word is not None else 1.0
            if u < self.prob:
                v = u / self.prob
                if v < self.mask_frac:
                    token = self.mask_id
                elif v < self.mask_frac + self.random_frac:
                    token = int(np.random.randint(self.random_low, self.vocab_size))
                else:
                    continue  # deleted
            out_ids.append(token)
            out_words.append(word)
        results['txt'], results['word_ids'] = out_ids, out_words
        return results


@TRANSFORMS.register_module()
class PackVSEInputs(BaseTransform):
    """Pack a sample into ``inputs`` (tensors) and ``data_samples`` (indices).

    The image side is ``results['img']``: an (R, D) region or frame set (packed
    float32), or an (H, W, 3) image from ``LoadVSEImage`` (packed as a (3, H, W) tensor of
    its dtype, normalised later by ``VSEDataPreprocessor``; a grey-scale (H, W) image, one
    that carries mmcv's ``img_shape``, is repeated to 3 channels). The text side is
    ``results['txt']`` (token ids from :class:`TokenizeCaption`). Either side may be
    absent (image-only or caption-only samples, e.g. in ``VSEInferencer``).
    ``img_drop_rate`` / ``img_drop_seed`` of :class:`GridDropParams` are carried along.

    Output: ``dict(inputs=dict(img=(R, D) float or (3, H, W), txt=(T,) long[,
    img_drop_rate, img_drop_seed]), data_samples=dict(img_idx=int, cap_idx=int))``.
    """

    def transform(self, results: dict) -> dict:
        inputs = {}
        if 'img' in results:
            inputs['img'] = _pack_image_side(results['img'], 'img_shape' in results)
        if 'txt' in results:
            inputs['txt'] = torch.as_tensor(results['txt'], dtype=torch.long)
        if 'img_drop_rate' in results:
            inputs['img_drop_rate'] = float(results['img_drop_rate'])
            inputs['img_drop_seed'] = int(results['img_drop_seed'])
        samples = {k: int(results[k]) for k in ('img_idx', 'cap_idx') if k in results}
        return dict(inputs=inputs, data_samples=samples)


def _pack_image_side(img: np.ndarray, decoded: bool) -> torch.Tensor:
    """(R, D) set -> float32 tensor; (H, W[, 3]) decoded image -> (3, H, W) of its dtype."""
    img = np.ascontiguousarray(img)
    if img.ndim == 2 and not decoded:
        return torch.as_tensor(img, dtype=torch.float32)
    if img.ndim == 2:  # grey-scale: repeat to 3 channels
        img = np.repeat(img[..., None], 3, axis=2)
    return torch.from_numpy(img.transpose(2, 0, 1).copy())


@TRANSFORMS.register_module()
class GridDropParams(BaseTransform):
    """Draw the grid size augmentation of VSE∞ for one image (applied in the model).

    With probability ``1 - keep_all_prob`` the image gets a drop rate
    ``max_rate * U(0, 1)`` (each grid vector of its feature map is then dropped with that
    probability); otherwise nothing is dropped. The drop itself happens after the
    backbone (:class:`BackboneGridEncoder`), which seeds a ``torch.Generator`` with the
    ``img_drop_seed`` drawn here: all randomness comes from the data pipeline's
    ``np.random``, so a resumed run reseeded per sample repeats it.

    Args:
        keep_all_prob: share of images that keep every grid vector. Defaults to 0.2.
        max_rate: the largest drop rate. Defaults to 0.2.

    Adds ``img_drop_rate`` (float) and ``img_drop_seed`` (int) to the results.
    """

    def __init__(self, keep_all_prob: float = 0.2, max_rate: float = 0.2) -> None:
        if not (0 <= keep_all_prob <= 1 and 0 <= max_rate < 1):
            raise ValueError(
                'GridDropParams: need 0 <= keep_all_prob <= 1 and 0 <= max_rate < 1, got '
                f'keep_all_prob={keep_all_prob}, max_rate={max_rate}.'
            )
        self.keep_all_prob, self.max_rate = keep_all_prob, max_rate

    def transform(self, results: dict) -> dict:
        drop = np.random.rand() >= self.keep_all_prob
        rate = self.max_rate * np.random.rand() if drop else 0.0
        results['img_drop_rate'] = float(rate)
        results['img_drop_seed'] = int(np.random.randint(0, 2**31 - 1))
        return results
