"""Raw-image caption data: both layouts, named errors, the image transforms."""

import json

import numpy as np
import pytest
from mmcv.transforms import Compose
from mmengine.registry import init_default_scope

from gpo_plugin.datasets import (
    LoadVSEImage,
    RandomSideRatioCrop,
    RawImageCaptionDataset,
    TokenizeCaption,
)
from gpo_plugin.utils.vocab import build_vocab_file

CAPTIONS = {
    'red.png': ['a red square', 'red', 'a red block', 'crimson square', 'red thing'],
    'green.png': ['a green square', 'green', 'a green block', 'lime square', 'green thing'],
    'blue.png': ['a blue square', 'blue', 'a blue block', 'navy square', 'blue thing'],
}
COLOURS = {'red.png': (0, 0, 255), 'green.png': (0, 255, 0), 'blue.png': (255, 0, 0)}  # BGR


@pytest.fixture
def image_root(tmp_path):
    import cv2

    for sub, names in (('train2014', ['red.png', 'green.png']), ('val2014', ['blue.png'])):
        (tmp_path / 'images' / sub).mkdir(parents=True)
        for name in names:
            cv2.imwrite(
                str(tmp_path / 'images' / sub / name), np.full((6, 8, 3), COLOURS[name], np.uint8)
            )
    vocab = tmp_path / 'vocab.json'
    caps = tmp_path / 'all_caps.txt'
    caps.write_text('\n'.join(c for cs in CAPTIONS.values() for c in cs))
    build_vocab_file([str(caps)], str(vocab), threshold=1)
    return tmp_path, dict(type='VocabTokenizer', vocab_file=str(vocab))


def write_karpathy(root, sentences=5, drop=None):
    images = [
        dict(filepath='train2014', filename='red.png', split='train'),
        dict(filepath='train2014', filename='green.png', split='restval'),
        dict(filepath='val2014', filename='blue.png', split='test'),
    ]
    for image in images:
        image['sentences'] = [dict(raw=c) for c in CAPTIONS[image['filename']][:sentences]]
        image.pop(drop, None)
    (root / 'dataset_coco.json').write_text(json.dumps(dict(images=images)))


def write_published(root, ids_per_caption=False):
    mapping = {'11': 'train2014/red.png', '12': 'train2014/green.png', '13': 'val2014/blue.png'}
    (root / 'id_mapping.json').write_text(json.dumps(mapping))
    (root / 'train_caps.txt').write_text('\n'.join(CAPTIONS['red.png'] + CAPTIONS['green.png']))
    ids = ['11'] * 5 + ['12'] * 5 if ids_per_caption else ['11', '12']
    (root / 'train_ids.txt').write_text('\n'.join(ids))


def comparable(ds):
    return [(d['img_path'], d['img_idx'], d['cap_idx'], d['caption']) for d in ds.data_list]


@pytest.mark.parametrize('ids_per_caption', [False, True])
def test_both_layouts_give_the_same_data_list(image_root, ids_per_caption):
    root, tokenizer = image_root
    write_karpathy(root)
    write_published(root, ids_per_caption)
    karpathy = RawImageCaptionDataset(str(root), 'train', ann_file='dataset_coco.json')
    published = RawImageCaptionDataset(str(root), 'train')
    assert comparable(karpathy) == comparable(published)
    rows = comparable(karpathy)
    assert len(rows) == 10 and rows[7][1:] == (1, 7, 'a green block')
    assert rows[0][0].endswith('images/train2014/red.png')
    test = RawImageCaptionDataset(str(root), 'testall', ann_file='dataset_coco.json')
    assert [r[0].split('/')[-1] for r in comparable(test)] == ['blue.png'] * 5
    assert karpathy.metainfo['captions_per_image'] == 5 and karpathy.metainfo['num_images'] == 2
    info = karpathy.get_data_info(6)
    assert info['caption'] == 'green' and 'txt' not in info  # a pure reader
    assert TokenizeCaption(tokenizer)(info)['txt'][0] == 1  # <start>


def test_named_errors(image_root):
    root, _ = image_root
    write_karpathy(root)
    (root / 'images' / 'train2014' / 'green.png').unlink()
    with pytest.raises(FileNotFoundError, match='green.png'):
        RawImageCaptionDataset(str(root), 'train', ann_file='dataset_coco.json')
    write_karpathy(root, sentences=4)
    with pytest.raises(ValueError, match=r'images\[2\] \(blue.png\) has 4 sentences'):
        RawImageCaptionDataset(str(root), 'test', ann_file='dataset_coco.json')
    write_karpathy(root, drop='split')
    with pytest.raises(ValueError, match=r"images\[0\] lacks \['split'\]"):
        RawImageCaptionDataset(str(root), 'test', ann_file='dataset_coco.json')
    with pytest.raises(FileNotFoundError, match='missing.json'):
        RawImageCaptionDataset(str(root), 'test', ann_file='missing.json')
    with pytest.raises(FileNotFoundError, match='train_caps.txt'):
        RawImageCaptionDataset(str(root), 'train')
    write_published(root)
    (root / 'id_mapping.json').write_text(json.dumps({'11': 'train2014/red.png'}))
    with pytest.raises(KeyError, match="'12'"):
        RawImageCaptionDataset(str(root), 'train')


def test_unreadable_image_is_named(tmp_path):
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'not an image')
    with pytest.raises(OSError, match='broken.jpg'):
        LoadVSEImage().transform(dict(img_path=str(bad)))
    with pytest.raises(OSError, match='nothere.jpg'):
        LoadVSEImage().transform(dict(img_path=str(tmp_path / 'nothere.jpg')))


def test_side_ratio_crop_and_train_pipeline(image_root):
    np.random.seed(0)
    img = np.zeros((100, 200, 3), np.uint8)
    sides = [RandomSideRatioCrop().transform(dict(img=img))['img'].shape[:2] for _ in range(500)]
    ratios_h = np.array([h for h, _ in sides]) / 100
    ratios_w = np.array([w for _, w in sides]) / 200
    assert ratios_h.min() >= 0.6 and ratios_h.max() <= 1.0
    assert abs(ratios_h.mean() - 0.8) < 0.02 and np.allclose(ratios_h, ratios_w, atol=0.011)
    root, _ = image_root
    init_default_scope('gpo_plugin')
    pipeline = Compose(
        [
            dict(type='LoadVSEImage'),
            dict(type='RandomSideRatioCrop'),
            dict(type='Resize', scale=(16, 16), keep_ratio=False),
            dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        ]
    )
    out = pipeline(dict(img_path=str(root / 'images' / 'train2014' / 'red.png')))
    assert out['img'].shape == (16, 16, 3) and (out['img'] == (0, 0, 255)).all()


def test_grid_demo_data_reads_back_with_the_real_reader(tmp_path):
    from gpo_plugin.demo import ensure_grid_demo_data
    from gpo_plugin.demo.grid_data import PHOTOS

    ann = ensure_grid_demo_data(tmp_path / 'grid')
    train = RawImageCaptionDataset(str(ann.parent), 'train', ann_file=ann.name)
    test = RawImageCaptionDataset(str(ann.parent), 'test', ann_file=ann.name)
    assert train.metainfo['num_images'] == 2 * len(PHOTOS) and len(train) == 10 * len(PHOTOS)
    assert test.metainfo['num_images'] == len(PHOTOS) == 23 and len(test) == 5 * 23
    # Test images are the whole photos; training crops are smaller parts of them.
    cat = next(d for d in test.data_list if d['img_path'].endswith('chelsea.png'))
    assert cat['caption'] == PHOTOS['chelsea.png'][0]
    out = LoadVSEImage().transform(dict(img_path=cat['img_path']))
    crop = LoadVSEImage().transform(
        dict(img_path=cat['img_path'].replace('test/chelsea.png', 'train/chelsea_crop0.png'))
    )
    # chelsea.png is 300 x 451: halved (2 x 2 means) to a longer side <= 400 px.
    assert out['img'].shape == (150, 226, 3)
    assert crop['img'].shape[0] < 150 and crop['img'].shape[1] < 226
