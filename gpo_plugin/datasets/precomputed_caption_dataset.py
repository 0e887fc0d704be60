"""Image–caption pairs over precomputed region features (the SCAN/VSE layout, docs/vse.md#data)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from mmengine.dataset import BaseDataset

from gpo_plugin.registry import DATASETS
from gpo_plugin.utils.vocab import split_words

from .text_tokenizers import VocabTokenizer, build_caption_tokenizer

# Words kept of a caption (DEFAULT_MAX_WORDS); COCO and Flickr30K captions are about 10 words.
DEFAULT_MAX_WORDS = 100


@DATASETS.register_module()
class PrecompCaptionDataset(BaseDataset):
    """One sample per caption, with the region features of its image.

    Files under ``data_root`` (the layout of every VSE repository since SCAN):
    ``{split}_ims.npy`` (N, R, D) float features, memory-mapped; ``{split}_caps.txt``, one
    caption a line, k consecutive lines per image (k = #captions / N, 5 for COCO/F30K);
    ``{split}_ids.txt`` (optional), one integer id a line for each image or each caption.

    Captions longer than ``max_words`` words are cut to their first ``max_words`` (with one
    warning for the split): one runaway caption would otherwise make its whole batch's text
    encoder run as long as it. With a word vocabulary, captions made only of unknown words
    (every token ``<unk>``: usually a vocabulary built from other captions) are kept but
    named in a warning.

    A sample (before the pipeline) holds ``regions`` (R, D) float32, ``token_ids`` /
    ``word_ids`` of the tokenised caption, ``img_idx`` (image index in the split),
    ``cap_idx`` (caption index) and the tokenizer's ``mask_id``, ``vocab_size`` and
    ``random_low`` for word augmentation.

    Args:
        data_root: directory holding the split files, e.g. ``data/coco/precomp``.
        split: ``'train'``, ``'dev'``, ``'test'`` or ``'testall'``.
        tokenizer: ``dict(type='VocabTokenizer', vocab_file=...)`` or
            ``dict(type='HFTokenizer', path=...)``.
        feat_dim: expected feature dimension D (the image encoder's ``in_channels``);
            ``None`` skips the check.
        captions_per_image: expected k; ``None`` takes it from the files.
        max_images: use only the first ``max_images`` images (and their captions), e.g.
            1000 for the COCO ``dev`` validation of the reference code. ``None``: all.
        check_finite: scan the features once, when the file is opened (in chunks of the
            memory map), and refuse NaN/inf naming the image. Defaults to True.
        max_words: longest caption kept, in words (``split_words``: words and punctuation
            marks); longer ones are truncated. Defaults to 100. ``None``: no limit.
        pipeline: transforms applied to each sample.
        test_mode: mmengine flag (no effect on the data).
    """

    def __init__(
        self,
        data_root: str,
        split: str,
        tokenizer: dict,
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
        self.tokenizer = build_caption_tokenizer(tokenizer)
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
        captions = cap_caption_words(read_captions(caps_path), self.max_words, caps_path)
        if isinstance(self.tokenizer, VocabTokenizer):
            warn_unknown_only(captions, self.tokenizer, caps_path)
        num_images, num_caps = ims.shape[0], len(captions)
        if num_caps == 0 or num_caps % num_images:
            raise ValueError(
                f'PrecompCaptionDataset: {caps_path} has {num_caps} captions for {num_images} '
                f'images in {ims_path}; expected a positive multiple of {num_images} (k '
                'consecutive captions per image).'
            )
        k = num_caps // num_images
        if self.expected_k is not None and k != self.expected_k:
            raise ValueError(
                f'PrecompCaptionDataset: {caps_path} has {k} captions per image, '
                f'the config expects captions_per_image={self.expected_k}.'
            )
        ids = self._read_ids(num_images, k)
        if self.max_images is not None:
            num_images = min(num_images, self.max_images)
        if self.check_finite:
            check_finite_features(ims, ims_path, num_images)
        self._metainfo.update(captions_per_image=k, num_images=num_images, image_ids=ids)
        return [dict(img_idx=c // k, cap_idx=c, caption=captions[c]) for c in range(num_images * k)]

    def _read_ids(self, num_images: int, k: int) -> list[str]:
        path = self._file('ids.txt')
        if not path.is_file():
            return [str(i) for i in range(num_images)]
        numbered = [(n, line) for n, line in enumerate(read_lines(path), 1) if line]
        if len(numbered) == num_images * k and k > 1:
            for n, image_id in numbered:
                first_n, first = numbered[(n - 1) // k * k]
                if image_id != first:
                    raise ValueError(
                        f'PrecompCaptionDataset: {path}:{n}: id {image_id!r} differs from '
                        f'{first!r} on line {first_n}; per-caption ids must repeat the id of '
                        f'their image on all k = {k} consecutive lines.'
                    )
            numbered = numbered[::k]
        for n, image_id in numbered:
            if not _is_integer(image_id):
                raise ValueError(
                    f'PrecompCaptionDataset: {path}:{n}: id {image_id!r} is not an integer; '
                    'the file holds one integer image id a line (e.g. COCO ids). Fix that line '
                    'or remove the file (ids then default to 0..N-1).'
                )
        if len(numbered) != num_images:
            raise ValueError(
                f'PrecompCaptionDataset: {path} has {len(numbered)} ids; expected one '
                f'per image ({num_images}) or per caption ({num_images * k}).'
            )
        seen: dict[str, int] = {}
        for n, image_id in numbered:
            if image_id in seen:
                raise ValueError(
                    f'PrecompCaptionDataset: {path}:{n}: image id {image_id!r} already given '
                    f'on line {seen[image_id]}; every image needs its own id.'
                )
            seen[image_id] = n
        return [image_id for _, image_id in numbered]

    # -- samples -------------------------------------------------------------------------
    def get_data_info(self, idx: int) -> dict:
        info = dict(super().get_data_info(idx))
        info['regions'] = np.array(self.images[info['img_idx']], dtype=np.float32)
        info['token_ids'], info['word_ids'] = self.tokenizer.encode(info['caption'])
        tok = self.tokenizer
        info.update(mask_id=tok.mask_id, vocab_size=tok.vocab_size, random_low=tok.random_low)
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


def _is_integer(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def cap_caption_words(captions: list[str], max_words: int | None, path: Path) -> list[str]:
    """``captions`` with each cut to its first ``max_words`` words; one warning names how
    many were cut and the longest."""
    if max_words is None:
        return captions
    if max_words < 1:
        raise ValueError(f'PrecompCaptionDataset: max_words must be >= 1 or None, got {max_words}.')
    long = [(n, words) for n, c in enumerate(captions) if len(words := split_words(c)) > max_words]
    if not long:
        return captions
    captions = list(captions)
    for n, words in long:
        captions[n] = ' '.join(words[:max_words])
    longest, words = max(long, key=lambda item: len(item[1]))
    warnings.warn(
        f'PrecompCaptionDataset: {path}: {len(long)} caption(s) longer than max_words='
        f'{max_words} were cut to {max_words} words (the longest, caption {longest} on line '
        f'{longest + 1}, has {len(words)}); raise `max_words` in the dataset config to keep more.',
        stacklevel=2,
    )
    return captions


def warn_unknown_only(captions: list[str], tokenizer: VocabTokenizer, path: Path) -> list[int]:
    """Warn about (and return) the indices of captions none of whose words is in the
    vocabulary: they train on ``<unk>`` tokens only."""
    known = tokenizer.word2idx
    unknown = [n for n, c in enumerate(captions) if not any(w in known for w in split_words(c))]
    if unknown:
        shown = ', '.join(str(n) for n in unknown[:10]) + (', ...' if len(unknown) > 10 else '')
        warnings.warn(
            f'PrecompCaptionDataset: {path}: {len(unknown)} caption(s) have no word in the '
            f'vocabulary and become <unk> tokens only (caption indices {shown}; line = index '
            '+ 1). Build the vocabulary from these captions (tools/build_vocab.py) if that is '
            'not intended.',
            stacklevel=2,
        )
    return unknown


def read_lines(path: Path) -> list[str]:
    """Stripped lines of a UTF-8 text file; a byte that is not UTF-8 names file and line."""
    lines = []
    with open(path, 'rb') as f:
        for n, raw in enumerate(f, 1):
            try:
                lines.append(raw.decode('utf-8').strip())
            except UnicodeDecodeError as error:
                raise ValueError(
                    f'{path}:{n}: not UTF-8 ({error.reason} at byte {error.start} of the line: '
                    f'{raw[max(0, error.start - 10) : error.start + 10]!r}); re-encode the file '
                    'as UTF-8, e.g. `iconv -f latin1 -t utf-8`.'
                ) from None
    return lines


def read_captions(path: Path) -> list[str]:
    """Captions of a ``{split}_caps.txt``, one a line; empty captions name file and line."""
    captions = read_lines(path)
    while captions and not captions[-1]:  # a trailing blank line is not a caption
        captions.pop()
    for n, caption in enumerate(captions, 1):
        if not caption:
            raise ValueError(
                f'PrecompCaptionDataset: {path}:{n}: empty (or whitespace-only) caption; every '
                'line must hold a caption, k consecutive lines per image.'
            )
    return captions


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
