"""One reader for the caption/id layout: both image datasets see the same files the same way."""

import json

import numpy as np
import pytest

from gpo_plugin.datasets import PrecompCaptionDataset, RawImageCaptionDataset
from gpo_plugin.datasets.caption_layout import CaptionLayoutError, read_caption_layout

CAPS = [f'a picture of thing {i} number {j}' for i in range(3) for j in range(2)]


def write_split(root, ids, caps=CAPS, feat_dim=4):
    """The same caps/ids files for both readers: features for PrecompCaptionDataset, an id
    mapping and 1x1 images for RawImageCaptionDataset."""
    import cv2

    root.mkdir(exist_ok=True)
    (root / 'train_caps.txt').write_text('\n'.join(caps) + '\n')
    (root / 'train_ids.txt').write_text('\n'.join(ids) + '\n')
    np.save(root / 'train_ims.npy', np.ones((3, 2, feat_dim), np.float32))
    (root / 'images').mkdir(exist_ok=True)
    mapping = {}
    for image_id in dict.fromkeys(ids):
        cv2.imwrite(str(root / 'images' / f'{image_id}.png'), np.zeros((1, 1, 3), np.uint8))
        mapping[image_id] = f'{image_id}.png'
    (root / 'id_mapping.json').write_text(json.dumps(mapping))
    return root


def both(root):
    precomp = PrecompCaptionDataset(str(root), 'train', captions_per_image=2)
    raw = RawImageCaptionDataset(str(root), 'train', captions_per_image=2)
    return precomp, raw


@pytest.mark.parametrize('per_caption', [False, True])
def test_both_datasets_read_the_same_captions_and_images(tmp_path, per_caption):
    ids = ['7', '3', '9']
    root = write_split(tmp_path / 'd', [i for i in ids for _ in range(2)] if per_caption else ids)
    precomp, raw = both(root)
    rows = [(d['img_idx'], d['cap_idx'], d['caption']) for d in precomp.data_list]
    assert rows == [(d['img_idx'], d['cap_idx'], d['caption']) for d in raw.data_list]
    assert rows[3] == (1, 3, CAPS[3])
    assert precomp.metainfo['image_ids'] == ids
    assert [p.split('/')[-1] for p in raw.metainfo['image_paths']] == [f'{i}.png' for i in ids]


@pytest.mark.parametrize(
    ('ids', 'caps', 'message'),
    [
        (
            ['1', '1', '2', '5', '3', '3'],
            CAPS,
            r"train_ids.txt:4: id '5' differs from '2' on line 3",
        ),
        (['1', '2', '1'], CAPS, r"train_ids.txt:3: image id '1' already given on line 1"),
        (['1', '2x', '3'], CAPS, r"train_ids.txt:2: id '2x' is not an integer"),
        (['1', '2', '3'], CAPS[:2] + [''] + CAPS[3:], r'train_caps.txt:3: empty'),
        (['1', '2', '3'], CAPS[:5], r'train_caps.txt has 5 captions for 3 images'),
    ],
)
def test_both_datasets_refuse_a_bad_file_with_the_same_named_error(tmp_path, ids, caps, message):
    root = write_split(tmp_path / 'd', ids, caps)
    for cls in (PrecompCaptionDataset, RawImageCaptionDataset):
        with pytest.raises(CaptionLayoutError, match=message):
            cls(str(root), 'train', captions_per_image=2)


def test_k_from_the_files_and_ids_optional_only_when_the_image_count_is_known(tmp_path):
    root = write_split(tmp_path / 'd', ['4', '5', '6'])
    layout = read_caption_layout(root / 'train_caps.txt', root / 'train_ids.txt')
    assert layout.captions_per_image == 2 and layout.image_ids == ['4', '5', '6']
    missing = root / 'nope_ids.txt'
    layout = read_caption_layout(root / 'train_caps.txt', missing, num_images=3)
    assert layout.image_ids == ['0', '1', '2'] and layout.captions == CAPS
    with pytest.raises(FileNotFoundError, match='nope_ids.txt'):
        read_caption_layout(root / 'train_caps.txt', missing)
    with pytest.raises(CaptionLayoutError, match='captions_per_image=3'):
        read_caption_layout(root / 'train_caps.txt', missing, num_images=3, expected_k=3)
