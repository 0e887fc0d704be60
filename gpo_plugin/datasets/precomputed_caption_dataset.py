"""Image–caption pairs over precomputed region features (the SCAN/VSE layout, docs/vse.md#data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mmengine.dataset import BaseDataset

from gpo_plugin.registry import DATASETS

from .caption_layout import DEFAULT_MAX_WORDS, cap_caption_words, read_caption_layout
from .text_tokenizers import VocabTokenizer, warn_unknown_only
from .vse_transforms import TokenizeCaption


@DATASETS.register_module()
class PrecompCaptionDataset(BaseDataset):
    """One sample per caption, with the region features of its image.

    Files under ``data_root`` (the layout of every VSE repository since SCAN):
    ``{split}_ims.npy`` (N, R, D) float features, memory-mapped; ``{split}_caps.txt``, one
    caption a line, k consecutive lines per image (k = #captions / N, 5 for COCO/F30K);
    ``{split}_ids.txt`` (optional), one integer id a line for each image or each caption.
    The caption and id files are read and checked by
    :func:`~gpo_plugin.datasets.caption_layout.read_caption_layout`.

    Captions longer than ``max_words`` words are cut to their first ``max_words`` (with one
    warning for the split): one runaway caption would otherwise make its whole batch's text
    encoder run as long as it. When the pipeline tokenises with a word vocabulary, captions
    made only of unknown words (every token ``<unk>``: usually a vocabulary built from other
    captions) are kept but named in a warning.

    A sample (before the pipeline) holds ``img`` (R, D) float32 (the image's region set),
    ``caption`` (the string; the pipeline's :class:`TokenizeCaption` tokenises it),
    ``img_idx`` (image index in the split) and ``cap_idx`` (caption index).

    Args:
        data_root: directory holding the split files, e.g. ``data/coco/precomp``.
        split: ``'train'``, ``'dev'``, ``'test'`` or ``'testall'``.
        feat_dim: expected feature dimension D (the image encoder's ``in_channels``);
            ``None`` skips the check.
        captions_per_image: expected k; ``None`` takes it from the files.
        max_images: use only the first ``max_images`` images (and their captions), e.g.
            1000 for the COCO ``dev`` validation of the reference code. ``None``: all.
        check_finite: scan the features once, when the file is opened (in chunks of the
            memory map), and refuse NaN/inf naming the image. Defaults to True.
        max_words: longest caption kept, in words (``split_words``: words and punctuation
            marks); longer ones are truncated. Defaults to 100. ``None``: no limit.
        pipeline: transforms applied to each sample, ``TokenizeCaption`` first.
        test_mode: mmengine flag (no effect on the data).
    """

    def __init__(
        self,
        data_root: str,
        split: str,
        feat_dim: int | None = None,
        captions_per_image: int | None = None,
        max_images: int | None = None,
        check_finite: bool = True,
        max_words: int | None = DEFAULT_MAX_WORDS,
        pipeline: list | None = None,
        test_mode: bool = False,
        **kwargs,
    ) -> None:
        self.split = split
        self.feat_dim = feat_dim
        self.expected_k = captions_per_image
        self.max_images = max_images
        self.check_finite = check_finite
        self.max_words = max_words
        self._ims: np.ndarray | None = None
        super().__init__(
            data_root=data_root,
            pipeline=pipeline or [],
            test_mode=test_mode,
            serialize_data=False,
            **kwargs,
        )

    # -- files ---------------------------------------------------------------------------
    def _file(self, suffix: str) -> Path:
        return Path(self.data_root) / f'{self.split}_{suffix}'

    @property
    def images(self) -> np.ndarray:
        """The (N, R, D) features, memory-mapped on first use in each process."""
        if self._ims is None:
            self._ims = np.load(self._file('ims.npy'), mmap_mode='r')
        return self._ims

    def __getstate__(self) -> dict:
        # Worker processes re-open the memory map instead of pickling its contents.
        state = self.__dict__.copy()
        state['_ims'] = None
        return state

    def load_data_list(self) -> list[dict]:
        ims_path, caps_path = self._file('ims.npy'), self._file('caps.txt')
        for path, what in (
            (ims_path, '(N, R, D) float region features'),
            (caps_path, 'one caption a line, k consecutive lines per image'),
        ):
            if not path.is_file():
                raise FileNotFoundError(
                    f'PrecompCaptionDataset: {path} not found; expected {what} for split '
                    f"'{self.split}'. Set `data_root` to the folder with {{split}}_ims.npy, "
                    '{split}_caps.txt, {split}_ids.txt (e.g. via --cfg-options).'
                )
        ims = load_features(ims_path)
        self._check_features(ims, ims_path)
        layout = read_caption_layout(
            caps_path, self._file('ids.txt'), ims.shape[0], self.expected_k, 'PrecompCaptionDataset'
        )
        captions = cap_caption_words(layout.captions, self.max_words, caps_path)
        tokenizer = self._pipeline_tokenizer()
        if isinstance(tokenizer, VocabTokenizer):
            warn_unknown_only(captions, tokenizer, caps_path)
        k, num_images = layout.captions_per_image, layout.num_images
        if self.max_images is not None:
            num_images = min(num_images, self.max_images)
        if self.check_finite:
            check_finite_features(ims, ims_path, num_images)
        self._metainfo.update(
            captions_per_image=k, num_images=num_images, image_ids=layout.image_ids
        )
        return [dict(img_idx=c // k, cap_idx=c, caption=captions[c]) for c in range(num_images * k)]

    def _check_features(self, ims: np.ndarray, ims_path: Path) -> None:
        if ims.ndim != 3:
            raise ValueError(
                f'PrecompCaptionDataset: {ims_path} must hold an (N, R, D) array '
                f'(images, regions, feature dim), got shape {ims.shape}.'
            )
        if 0 in ims.shape:
            raise ValueError(
                f'PrecompCaptionDataset: {ims_path} holds no features (shape {ims.shape}); '
                'it needs at least one image with at least one region of at least one channel. '
                'Re-extract the features of this split.'
            )
        if ims.dtype not in FEATURE_DTYPES:
            raise TypeError(
                f'PrecompCaptionDataset: {ims_path} holds {ims.dtype} values; region features '
                'must be float16, float32 or float64. Convert the file, e.g. '
                "np.save(path, np.load(path).astype('float32')), if the values are features."
            )
        if self.feat_dim is not None and ims.shape[2] != self.feat_dim:
            raise ValueError(
                f'PrecompCaptionDataset: {ims_path} has feature dimension {ims.shape[2]}, but the '
                f'config expects feat_dim={self.feat_dim}; set `feat_dim` of the dataset and '
                '`in_channels` of the image encoder to the features you have.'
            )

    def _pipeline_tokenizer(self):
        """The tokenizer of the pipeline's ``TokenizeCaption`` (None without one)."""
        steps = getattr(self.pipeline, 'transforms', [])
        return next((t.tokenizer for t in steps if isinstance(t, TokenizeCaption)), None)

    # -- samples -------------------------------------------------------------------------
    def get_data_info(self, idx: int) -> dict:
        info = dict(super().get_data_info(idx))
        info['img'] = np.array(self.images[info['img_idx']], dtype=np.float32)
        return info


FEATURE_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
# Elements scanned at a time by check_finite_features (64 MiB of float32).
_CHUNK = 1 << 24


def load_features(path: Path) -> np.ndarray:
    """Memory-map a ``{split}_ims.npy``; an empty, truncated or foreign file names itself."""
    if path.stat().st_size == 0:
        raise ValueError(
            f'PrecompCaptionDataset: {path} is empty (0 bytes), e.g. from an interrupted copy '
            'or extraction; copy or extract the features again.'
        )
    try:
        return np.load(path, mmap_mode='r')
    except (ValueError, EOFError, OSError) as err:
        raise ValueError(
            f'PrecompCaptionDataset: {path} is not a readable .npy array ({type(err).__name__}: '
            f'{err}); it may be truncated or another format. Write it with numpy.save.'
        ) from None


def check_finite_features(ims: np.ndarray, path: Path, num_images: int) -> None:
    """Refuse NaN/inf among the first ``num_images`` (N, R, D) features, naming the first bad
    image; reads the memory map in chunks (once, when the file is opened)."""
    per_image = max(1, int(np.prod(ims.shape[1:])))
    step = max(1, _CHUNK // per_image)
    for start in range(0, num_images, step):
        chunk = np.asarray(ims[start : min(start + step, num_images)])
        finite = np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)
        if not finite.all():
            image = start + int(np.argmin(finite))
            bad = np.argwhere(~np.isfinite(ims[image]))[0]
            raise ValueError(
                f'PrecompCaptionDataset: {path}: image {image} has a non-finite feature '
                f'(value {ims[image][tuple(bad)]} at region {bad[0]}, channel {bad[1]}); one '
                'NaN makes every gradient NaN. Recompute or drop that image (and its captions), '
                'or set check_finite=False to skip this scan.'
            )
