"""A small synthetic set in the In-Shop Clothes Retrieval layout (docs/dml.md#in-shop).

Each item is a garment-like shape of its own colour pair and stripe frequency, photographed in
several views (position, scale and background noise vary). Items are spread over
``<gender>/<category>`` folders, as in the real release; training and test items interleave in
the partition file, and every test item has query and gallery images. Same seed, same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CATEGORIES = ('MEN/Denim', 'MEN/Jackets_Vests', 'WOMEN/Dresses', 'WOMEN/Blouses_Shirts')
VIEWS = ('front', 'side', 'back', 'full', 'additional', 'flat')
PARTITION = 'Eval/list_eval_partition.txt'
HEADER = 'image_name item_id evaluation_status'


def draw_item_view(rng: np.random.Generator, look: np.ndarray, size: int) -> np.ndarray:
    """One (size, size, 3) uint8 view: a striped block in the item's colours, randomly placed
    and sized, over background noise."""
    image = rng.integers(0, 256, (size, size, 3)).astype(np.float32) * 0.5 + 64
    side = int(size * rng.uniform(0.5, 0.8))
    top, left = rng.integers(0, size - side + 1, 2)
    rows = np.arange(side)[:, None]
    stripes = (np.sin(rows * look[6] + look[7]) > 0).astype(np.float32)
    block = stripes[..., None] * look[:3] + (1 - stripes[..., None]) * look[3:6]
    image[top : top + side, left : left + side] = np.broadcast_to(block, (side, side, 3))
    return image.clip(0, 255).astype(np.uint8)


def make_inshop_demo_data(
    root: str | Path,
    num_train_items: int = 12,
    num_test_items: int = 8,
    images_per_item: int = 4,
    num_query: int = 2,
    size: int = 32,
    seed: int = 0,
) -> Path:
    """Write the set under ``root``: ``Img/img/<gender>/<category>/<item_id>/NN_k_view.jpg`` and
    ``Eval/list_eval_partition.txt`` in the release's format (image count, header, then
    ``image_name item_id evaluation_status`` lines, names padded to a column).

    Args:
        num_train_items: items with status ``train``.
        num_test_items: items whose first ``num_query`` images are ``query``, the others
            ``gallery``.
        images_per_item: views per item (more than ``num_query``).
        size: image side in pixels.

    Returns:
        ``root`` as a Path.
    """
    if not 0 < num_query < images_per_item <= len(VIEWS):
        raise ValueError(
            f'make_inshop_demo_data: need 0 < num_query ({num_query}) < images_per_item '
            f'({images_per_item}) <= {len(VIEWS)}.'
        )
    root = Path(root)
    rng = np.random.default_rng(seed)
    num_items = num_train_items + num_test_items
    # Test items interleave with training items, as in the release's item order.
    test_items = set(np.linspace(1, num_items - 1, num_test_items).round().astype(int).tolist())
    if len(test_items) != num_test_items:
        test_items = set(range(num_train_items, num_items))
    lines = []
    for item in range(num_items):
        item_id = f'id_{item + 1:08d}'
        folder = f'img/{CATEGORIES[item % len(CATEGORIES)]}/{item_id}'
        look = np.concatenate([rng.uniform(0, 255, 6), rng.uniform(0.3, 1.5, 1), [0.0]])
        for k in range(images_per_item):
            name = f'{folder}/{item % 100:02d}_{k + 1}_{VIEWS[k]}.jpg'
            path = root / 'Img' / name
            path.parent.mkdir(parents=True, exist_ok=True)
            look[7] = rng.uniform(0, np.pi)
            Image.fromarray(draw_item_view(rng, look, size)).save(path, quality=95)
            if item not in test_items:
                status = 'train'
            else:
                status = 'query' if k < num_query else 'gallery'
            lines.append(f'{name:<70}{item_id:<20}{status}')
    partition = root / PARTITION
    partition.parent.mkdir(parents=True, exist_ok=True)
    partition.write_text('\n'.join([str(len(lines)), HEADER, *lines]) + '\n')
    return root
