"""The bundled VSE∞ demo set: a small, learnable image–caption retrieval set written in the
precomputed-feature layout (docs/vse.md#data), so the real reader serves it.

Each synthetic "image" holds 3-5 objects drawn from a fixed vocabulary; every object
covers 1-6 of the 36 regions, whose features are the object's signature plus noise,
and the other regions are background clutter (strong, varied, never named). Each of
the 5 captions names some of the image's objects with a varied template. Captions
name objects whatever their region count, so detecting presence (max-like pooling)
beats averaging, which dilutes small objects among the clutter. Same seed, same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gpo_plugin.demo.caption_files import read_templates, read_words
from gpo_plugin.utils.vocab import build_vocab_file

OBJECTS = read_words('vse_objects.txt')
TEMPLATES = read_templates('vse_templates.json')  # by number of objects named
SPLITS = {'train': 2000, 'dev': 200, 'test': 200, 'testall': 500}
NUM_REGIONS = 36
NUM_BACKGROUNDS = 48


def make_split(
    rng: np.random.Generator, num_images: int, objects: np.ndarray, backgrounds: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    feat_dim = objects.shape[1]
    ims = np.empty((num_images, NUM_REGIONS, feat_dim), dtype=np.float32)
    captions: list[str] = []
    for i in range(num_images):
        present = rng.choice(len(OBJECTS), size=rng.integers(3, 6), replace=False)
        region_labels = []
        for obj in present:
            region_labels += [obj] * int(rng.integers(1, 7))
        clutter = rng.choice(NUM_BACKGROUNDS, size=rng.integers(2, 5), replace=False)
        region_labels += [
            -1 - int(rng.choice(clutter)) for _ in range(NUM_REGIONS - len(region_labels))
        ]
        rng.shuffle(region_labels)
        for r, label in enumerate(region_labels):
            base = objects[label] if label >= 0 else backgrounds[-1 - label]
            ims[i, r] = base + 0.3 * rng.standard_normal(feat_dim)
        for _ in range(5):
            count = int(rng.integers(2, 4))
            named = [OBJECTS[o] for o in rng.choice(present, size=count, replace=False)]
            captions.append(str(rng.choice(TEMPLATES[count])).format(*named))
    return ims, captions


def make_demo_data(
    out: str | Path, seed: int = 0, feat_dim: int = 128, sizes: dict[str, int] | None = None
) -> Path:
    """Write every split to ``out``; returns the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    objects = rng.standard_normal((len(OBJECTS), feat_dim)).astype(np.float32)
    # Clutter is stronger than the objects, so averaging drowns small objects in it.
    backgrounds = 1.5 * rng.standard_normal((NUM_BACKGROUNDS, feat_dim)).astype(np.float32)
    offset = 0
    for split, num_images in (sizes or SPLITS).items():
        ims, captions = make_split(rng, num_images, objects, backgrounds)
        np.save(out / f'{split}_ims.npy', ims)
        (out / f'{split}_caps.txt').write_text('\n'.join(captions) + '\n', encoding='utf-8')
        ids = [str(offset + i) for i in range(num_images)]
        (out / f'{split}_ids.txt').write_text('\n'.join(ids) + '\n', encoding='utf-8')
        offset += num_images
    return out


def ensure_vse_demo_data(data_dir: str | Path, log=print) -> tuple[Path, Path]:
    """Create the demo set and its vocabulary under ``data_dir`` where missing.

    Returns ``(precomp folder, vocabulary JSON)``.
    """
    precomp, vocab = Path(data_dir) / 'precomp', Path(data_dir) / 'vocab.json'
    if not all((precomp / f'{split}_ims.npy').is_file() for split in SPLITS):
        log(f'[demo] writing the synthetic retrieval set to {precomp}')
        make_demo_data(precomp)
    if not vocab.is_file():
        size = build_vocab_file([precomp / 'train_caps.txt'], vocab, threshold=4)
        log(f'[demo] vocabulary of {size} words -> {vocab}')
    return precomp, vocab
