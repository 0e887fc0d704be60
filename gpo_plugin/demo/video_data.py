"""A small synthetic video–text set in HGR's release layout (docs/vse.md#video-demo).

Each "video" has 12-48 frames of two feature types (HDF5 files concatenated along the
feature axis, as HGR's appearance + motion features). It shows 2-3 actions drawn from a
fixed list; each action fills a short run of 1-2 consecutive frames with its signature
plus noise, and every other frame is background clutter, twice as strong, that no caption names.
Captions name one or two of the video's actions with a few templates, so the same text
often describes several videos (the protocol's duplicate captions). The informative
frames are a few among many: averaging dilutes them, a pooler that weights the largest
responses finds them. Same seed, same files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gpo_plugin.demo.caption_files import read_templates, read_words
from gpo_plugin.utils.vocab import build_vocab

ACTIONS = read_words('video_actions.txt')
TEMPLATES = read_templates('video_templates.json')  # by number of actions named
SPLITS = {'trn': 800, 'val': 100, 'tst': 200}
CAPTIONS_PER_VIDEO = 4
FEATURE_DIMS = {'appearance': 48, 'motion': 16}
FRAME_RANGE = (12, 49)
NUM_CLUTTER = 32


def make_video(
    rng: np.random.Generator, signatures: np.ndarray, clutter: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """One video's (T, D) frames and its captions."""
    num_frames = int(rng.integers(*FRAME_RANGE))
    actions = rng.choice(len(ACTIONS), size=int(rng.integers(2, 4)), replace=False)
    labels = -1 - rng.choice(NUM_CLUTTER, size=num_frames)  # clutter everywhere first
    for action in actions:
        run = int(rng.integers(1, 3))
        start = int(rng.integers(0, num_frames - run + 1))
        labels[start : start + run] = action
    bases = np.where(labels[:, None] >= 0, signatures[np.maximum(labels, 0)], clutter[-1 - labels])
    frames = (bases + 0.3 * rng.standard_normal(bases.shape)).astype(np.float32)
    captions = []
    for _ in range(CAPTIONS_PER_VIDEO):
        count = int(rng.integers(1, 3))
        named = [ACTIONS[a] for a in rng.choice(actions, size=count, replace=False)]
        captions.append(str(rng.choice(TEMPLATES[count])).format(*named))
    return frames, captions


def make_video_demo_data(
    out: str | Path, seed: int = 0, sizes: dict[str, int] | None = None
) -> Path:
    """Write HGR's layout under ``out``; returns ``out``.

    ``public_split/{split}_names.npy``, ``annotation/RET/ref_captions.json``,
    ``annotation/RET/word2int.json`` (HGR-style ``{word: id}`` from the training captions)
    and ``ordered_feature/SA/{appearance,motion}/{split}_ft.hdf5``.
    """
    import h5py

    out = Path(out)
    rng = np.random.default_rng(seed)
    dim = sum(FEATURE_DIMS.values())
    signatures = rng.standard_normal((len(ACTIONS), dim)).astype(np.float32)
    clutter = 2.0 * rng.standard_normal((NUM_CLUTTER, dim)).astype(np.float32)
    ref_captions: dict[str, list[str]] = {}
    for d in ('public_split', 'annotation/RET'):
        (out / d).mkdir(parents=True, exist_ok=True)
    offset = 0
    for split, count in (sizes or SPLITS).items():
        names = [f'video{offset + i}' for i in range(count)]
        offset += count
        videos = {}
        for name in names:
            videos[name], ref_captions[name] = make_video(rng, signatures, clutter)
        np.save(out / 'public_split' / f'{split}_names.npy', np.array(names))
        lo = 0
        for kind, width in FEATURE_DIMS.items():
            folder = out / 'ordered_feature' / 'SA' / kind
            folder.mkdir(parents=True, exist_ok=True)
            with h5py.File(folder / f'{split}_ft.hdf5', 'w') as f:
                for name, frames in videos.items():
                    f.create_dataset(name, data=frames[:, lo : lo + width])
            lo += width
    (out / 'annotation/RET/ref_captions.json').write_text(json.dumps(ref_captions))
    train = [s for n in np.load(out / 'public_split/trn_names.npy') for s in ref_captions[n]]
    words = ['<BOS>', '<EOS>', '<UNK>', *build_vocab(train, threshold=1)[5:]]
    word2int = {w: i for i, w in enumerate(words)}
    (out / 'annotation/RET/word2int.json').write_text(json.dumps(word2int))
    return out


def ensure_video_demo_data(data_dir: str | Path, log=print) -> Path:
    """Create the demo set under ``data_dir`` where missing; returns ``data_dir``."""
    data_dir = Path(data_dir)
    if not (data_dir / 'annotation/RET/word2int.json').is_file():
        log(f'[demo-video] writing the synthetic video set to {data_dir}')
        make_video_demo_data(data_dir)
    return data_dir
