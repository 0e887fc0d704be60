"""Image–caption pairs over precomputed region features (the SCAN/VSE layout, docs/vse.md#data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mmengine.dataset import BaseDataset

from gpo_plugin.registry import DATASETS


@DATASETS.register_module()
class PrecompCaptionDataset(BaseDataset):
    """One sample per caption, with the region features of its image.

    Files under ``data_root`` (the layout of every VSE repository since SCAN):
    ``{split}_ims.npy`` (N, R, D) float features, memory-mapped; ``{split}_caps.txt``, one
    caption a line, k consecutive lines per image (k = #captions / N, 5 for COCO/F30K);
    ``{split}_ids.txt`` (optional), one id a line for each image or each caption.

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
        pipeline: transforms applied to each sample.
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
        pipeline: list | None = None,
        test_mode: bool = False,
        **kwargs,
    ) -> None:
        self.split = split
        self.feat_dim = feat_dim
        self.expected_k = captions_per_image
        self.max_images = max_images
        self.check_finite = check_finite
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
        try:
            ims = np.load(ims_path, mmap_mode='r')
        except ValueError as err:
            raise ValueError(
                f'PrecompCaptionDataset: {ims_path} is not a readable .npy array ({err}).'
            ) from None
        if ims.ndim != 3:
            raise ValueError(
                f'PrecompCaptionDataset: {ims_path} must hold an (N, R, D) array '
                f'(images, regions, feature dim), got shape {ims.shape}.'
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
        captions = read_captions(caps_path)
        num_images, num_caps = ims.shape[0], len(captions)
        if num_images == 0 or num_caps == 0 or num_caps % num_images:
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
        info['img'] = np.array(self.images[info['img_idx']], dtype=np.float32)
        return info


FEATURE_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
# Elements scanned at a time by check_finite_features (64 MiB of float32).
_CHUNK = 1 << 24


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
