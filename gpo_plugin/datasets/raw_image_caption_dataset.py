"""Image–caption pairs over raw image files: the published VSE∞ layout or a Karpathy JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mmengine.dataset import BaseDataset

from gpo_plugin.registry import DATASETS

from .caption_layout import read_caption_layout

# Split names of the precomputed layout -> Karpathy "split" values.
KARPATHY_SPLITS = {
    'train': ('train', 'restval'),
    'dev': ('val',),
    'val': ('val',),
    'test': ('test',),
    'testall': ('test',),
}


@DATASETS.register_module()
class RawImageCaptionDataset(BaseDataset):
    """One sample per caption, with the path of its image (read by the pipeline).

    A pure reader: two layouts, both giving the same data list (``img_path``, ``img_idx``,
    ``cap_idx``, ``caption``); the pipeline tokenises (``TokenizeCaption``) and loads the
    image (``LoadVSEImage``, into ``img``):

    - **published** (VSE∞'s raw-image release): under ``data_root``,
      ``{split}_caps.txt`` (one caption a line, k consecutive lines per image),
      ``{split}_ids.txt`` (an image id per image or per caption; both read and checked by
      :func:`~gpo_plugin.datasets.caption_layout.read_caption_layout`, as for the
      precomputed features) and ``id_mapping.json`` (``{"id": "relative/path.jpg"}``);
      image files under ``img_dir``.
    - **Karpathy**: ``ann_file`` = ``dataset_coco.json`` / ``dataset_flickr30k.json``
      (``images[]`` with ``filepath`` (COCO only), ``filename``, ``split`` and
      ``sentences[].raw``); image ``img_dir/filepath/filename``. ``split`` maps as
      ``train`` -> train + restval, ``dev``/``val`` -> val, ``test``/``testall`` -> test;
      the first ``captions_per_image`` sentences of each image are used.

    Every image file is checked when the list is built: a missing one stops with an
    error naming it (an unreadable one stops in ``LoadVSEImage``).

    Args:
        data_root: folder of the published layout's text files (and the default base of
            ``img_dir`` / ``ann_file``).
        split: ``'train'``, ``'dev'``, ``'test'`` or ``'testall'``.
        img_dir: image folder (relative paths are under ``data_root``). Defaults to
            ``'images'``.
        ann_file: a Karpathy JSON (relative to ``data_root``); empty for the published
            layout.
        captions_per_image: k (5 for COCO/Flickr30K). ``None`` (published layout only)
            takes it from the files.
        max_images: use only the first ``max_images`` images. ``None``: all.
        pipeline: transforms, e.g. ``TokenizeCaption`` -> ``LoadVSEImage`` -> crops ->
            ``PackVSEInputs``.
    """

    def __init__(
        self,
        data_root: str,
        split: str,
        img_dir: str = 'images',
        ann_file: str = '',
        captions_per_image: int | None = 5,
        max_images: int | None = None,
        pipeline: list | None = None,
        test_mode: bool = False,
        **kwargs,
    ) -> None:
        self.split = split
        self.img_dir = img_dir
        self.expected_k = captions_per_image
        self.max_images = max_images
        super().__init__(
            data_root=data_root,
            ann_file=ann_file,
            pipeline=pipeline or [],
            test_mode=test_mode,
            serialize_data=False,
            **kwargs,
        )

    @property
    def image_root(self) -> Path:
        path = Path(self.img_dir)
        return path if path.is_absolute() else Path(self.data_root) / path

    def load_data_list(self) -> list[dict]:
        if self.ann_file:
            paths, captions = self._load_karpathy(Path(self.ann_file))
        else:
            paths, captions = self._load_published(Path(self.data_root))
        if self.max_images is not None:
            paths, captions = paths[: self.max_images], captions[: self.max_images]
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(
                    f'RawImageCaptionDataset: image {path} not found (split {self.split!r}); '
                    f'set `img_dir` to the folder holding the images (now {self.image_root}).'
                )
        k = len(captions[0])
        self._metainfo.update(
            captions_per_image=k, num_images=len(paths), image_paths=[str(p) for p in paths]
        )
        return [
            dict(img_path=str(path), img_idx=i, cap_idx=i * k + j, caption=caption)
            for i, (path, caps) in enumerate(zip(paths, captions, strict=True))
            for j, caption in enumerate(caps)
        ]

    # -- Karpathy JSON ---------------------------------------------------------------------
    def _load_karpathy(self, ann_file: Path) -> tuple[list[Path], list[list[str]]]:
        if not ann_file.is_file():
            raise FileNotFoundError(
                f'RawImageCaptionDataset: Karpathy split file {ann_file} not found; set '
                '`ann_file` to dataset_coco.json / dataset_flickr30k.json.'
            )
        if self.split not in KARPATHY_SPLITS:
            raise ValueError(
                f'RawImageCaptionDataset: split {self.split!r} is not one of '
                f'{sorted(KARPATHY_SPLITS)}.'
            )
        with open(ann_file, encoding='utf-8') as f:
            images = json.load(f).get('images')
        if not isinstance(images, list):
            raise ValueError(f'RawImageCaptionDataset: {ann_file} has no "images" list.')
        wanted = KARPATHY_SPLITS[self.split]
        k = self.expected_k
        if k is None:
            raise ValueError(
                'RawImageCaptionDataset: set `captions_per_image` for a Karpathy JSON.'
            )
        paths, captions = [], []
        for n, image in enumerate(images):
            missing = {'filename', 'split', 'sentences'} - set(image)
            if missing:
                raise ValueError(
                    f'RawImageCaptionDataset: {ann_file}: images[{n}] lacks {sorted(missing)}.'
                )
            if image['split'] not in wanted:
                continue
            sentences = [s['raw'].strip() for s in image['sentences']]
            if len(sentences) < k:
                raise ValueError(
                    f'RawImageCaptionDataset: {ann_file}: images[{n}] ({image["filename"]}) has '
                    f'{len(sentences)} sentences, fewer than captions_per_image={k}.'
                )
            paths.append(self.image_root / image.get('filepath', '') / image['filename'])
            captions.append(sentences[:k])
        if not paths:
            raise ValueError(
                f'RawImageCaptionDataset: {ann_file} has no image with split in {wanted}.'
            )
        return paths, captions

    # -- published layout ------------------------------------------------------------------
    def _load_published(self, root: Path) -> tuple[list[Path], list[list[str]]]:
        files = {
            'caps': root / f'{self.split}_caps.txt',
            'ids': root / f'{self.split}_ids.txt',
            'mapping': root / 'id_mapping.json',
        }
        for name, path in files.items():
            if not path.is_file():
                raise FileNotFoundError(
                    f'RawImageCaptionDataset: {path} not found ({name} file of split '
                    f"'{self.split}'); set `data_root` to the folder with {{split}}_caps.txt, "
                    '{split}_ids.txt and id_mapping.json, or give a Karpathy JSON as `ann_file`.'
                )
        layout = read_caption_layout(
            files['caps'], files['ids'], None, self.expected_k, 'RawImageCaptionDataset'
        )
        with open(files['mapping'], encoding='utf-8') as f:
            mapping = json.load(f)
        paths = []
        for image_id in layout.image_ids:
            if image_id not in mapping:
                raise KeyError(
                    f'RawImageCaptionDataset: id {image_id!r} of {files["ids"]} is not in '
                    f'{files["mapping"]}.'
                )
            paths.append(self.image_root / mapping[image_id])
        k, lines = layout.captions_per_image, layout.captions
        return paths, [lines[i * k : (i + 1) * k] for i in range(layout.num_images)]


def write_karpathy_json(path: str | os.PathLike, images: list[dict], dataset: str) -> None:
    """Write ``{"images": [...], "dataset": name}`` in the Karpathy format (for tools/demos)."""
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(dict(images=images, dataset=dataset), f, indent=1)
