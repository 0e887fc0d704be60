"""The bundled grid-feature demo set: scikit-image's sample photographs, captioned, in the
Karpathy JSON layout (docs/vse.md#raw-images-and-grid-features), so the real reader
(``RawImageCaptionDataset``) serves it.

Each photo of ``skimage/data`` gets five captions written for what it shows. Training
images are two fixed crops of each photo (side ratio 0.55-0.8, top-left and top-right,
saved as extra files; the training pipeline crops them again at random); the test images
are the whole photos, which no training image shows completely, and a harder ``val``
split (``dev``) holds a small bottom-centre part of each photo (side ratio 0.45), most of
which no training crop covers. So the demo measures how well a model aligns real pixels
with real captions of the same scenes, not generalisation to unseen scenes (there are only
23 of them). Same seed, same files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gpo_plugin.demo.caption_files import read_captions

# file in skimage/data -> five captions of what the photo shows.
PHOTOS = read_captions('grid_photos.json')

# Corners of the training crops: (top, left) as fractions of the free margin.
_CROP_PLACES = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0), (0.5, 0.5), (0.5, 0.0))


def _skimage_data_dir() -> Path:
    try:
        import skimage
    except ImportError:
        raise ImportError(
            "The grid demo needs scikit-image's sample photos: pip install 'gpo-plugin[vision]'."
        ) from None
    return Path(skimage.__file__).parent / 'data'


def _read_rgb(path: Path) -> np.ndarray:
    from skimage import io

    image = io.imread(path)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3]
    # The demo trains at 224 px: keep files small (the longer side at most 400 px).
    step = int(np.ceil(max(image.shape[:2]) / 400))
    if step > 1:
        from skimage.transform import downscale_local_mean

        image = downscale_local_mean(image, (step, step, 1))
    return np.ascontiguousarray(image).round().astype(np.uint8)


def make_grid_demo_data(root: str | Path, seed: int = 0, crops_per_photo: int = 2) -> Path:
    """Write ``images/`` and ``dataset_demo.json`` (Karpathy format) under ``root``."""
    from skimage import io

    root = Path(root)
    rng = np.random.default_rng(seed)
    source = _skimage_data_dir()
    entries = []
    for sub in ('train', 'test', 'val'):
        (root / 'images' / sub).mkdir(parents=True, exist_ok=True)
    for name, captions in PHOTOS.items():
        stem = Path(name).stem
        image = _read_rgb(source / name)
        sentences = [dict(raw=c) for c in captions]
        io.imsave(root / 'images' / 'test' / f'{stem}.png', image, check_contrast=False)
        entries.append(
            dict(filepath='test', filename=f'{stem}.png', split='test', sentences=sentences)
        )
        h, w = image.shape[:2]
        # The harder view: a bottom-centre part (no draw from rng: the crops stay the same).
        ph, pw = int(h * 0.45), int(w * 0.45)
        part = image[h - ph :, (w - pw) // 2 : (w - pw) // 2 + pw]
        io.imsave(root / 'images' / 'val' / f'{stem}.png', part, check_contrast=False)
        entries.append(
            dict(filepath='val', filename=f'{stem}.png', split='val', sentences=sentences)
        )
        for i in range(crops_per_photo):
            ratio = rng.uniform(0.55, 0.8)
            ch, cw = int(h * ratio), int(w * ratio)
            ty, tx = _CROP_PLACES[i % len(_CROP_PLACES)]
            y0, x0 = int(ty * (h - ch)), int(tx * (w - cw))
            crop = image[y0 : y0 + ch, x0 : x0 + cw]
            filename = f'{stem}_crop{i}.png'
            io.imsave(root / 'images' / 'train' / filename, crop, check_contrast=False)
            entries.append(
                dict(filepath='train', filename=filename, split='train', sentences=sentences)
            )
    with open(root / 'dataset_demo.json', 'w', encoding='utf-8') as f:
        json.dump(dict(images=entries, dataset='skimage_demo'), f, indent=1)
    return root / 'dataset_demo.json'


def ensure_grid_demo_data(root: str | Path = 'data/demo/grid') -> Path:
    """Create the demo set under ``root`` if missing; return the Karpathy JSON path."""
    root = Path(root)
    ann = root / 'dataset_demo.json'
    if not ann.is_file():
        make_grid_demo_data(root)
    return ann
