"""CUB / Cars196 / SOP readers on generated miniature copies of the real layouts (docs/dml.md#data),
the MLRC folds, the digits set, and clear errors for missing or malformed files."""

import os

import numpy as np
import pytest
from conftest import DML_PIPELINE, DML_TRAIN_IDS, make_cars, make_cub, make_sop
from scipy.io import savemat

from gpo_plugin.datasets import (
    Cars196MetricDataset,
    CUBMetricDataset,
    DigitsMetricDataset,
    SOPMetricDataset,
    fold_classes,
)
from gpo_plugin.registry import DATASETS

READERS = [
    (CUBMetricDataset, make_cub, (101, 102, 150)),
    (Cars196MetricDataset, make_cars, (99, 120, 196)),
    (SOPMetricDataset, make_sop, (11319, 11320, 22634)),
]


@pytest.mark.parametrize('cls,make,test_ids', READERS)
def test_class_disjoint_splits(tmp_path, cls, make, test_ids):
    root = make(tmp_path)
    train = cls(data_root=str(root), split='train', pipeline=DML_PIPELINE)
    test = cls(data_root=str(root), split='test', pipeline=DML_PIPELINE)
    assert len(train) == 2 * len(DML_TRAIN_IDS) and len(test) == 2 * len(test_ids)
    train_ids = {train.get_data_info(i)['class_id'] for i in range(len(train))}
    assert train_ids == set(DML_TRAIN_IDS)
    assert {test.get_data_info(i)['class_id'] for i in range(len(test))} == set(test_ids)
    assert sorted(set(test.get_gt_labels().tolist())) == list(range(len(test_ids)))
    assert test.test_mode and not train.test_mode
    sample = test[0]  # images load through the standard mmpretrain pipeline
    assert tuple(sample['inputs'].shape) == (3, 6, 5)
    assert int(sample['data_samples'].gt_label) == 0


def test_fold_classes_partition_the_training_classes():
    classes = list(range(1, 101))
    held = [fold_classes(classes, k)[1] for k in range(4)]
    assert [len(h) for h in held] == [25] * 4
    assert sorted(sum(held, [])) == classes
    kept, held_out = fold_classes(classes, 2)
    assert not set(kept) & set(held_out) and len(kept) == 75
    assert held_out == list(range(51, 76))
    with pytest.raises(ValueError, match='fold'):
        fold_classes(classes, 4)


@pytest.mark.parametrize('cls,make,test_ids', READERS)
def test_mlrc_folds(tmp_path, cls, make, test_ids):
    root = str(make(tmp_path))
    val = cls(data_root=root, split='train', fold=1, fold_role='val')
    train = cls(data_root=root, split='train', fold=1, fold_role='train')
    assert {val.get_data_info(i)['class_id'] for i in range(len(val))} == {3, 4}
    assert {train.get_data_info(i)['class_id'] for i in range(len(train))} == {1, 2, 5, 6, 7, 8}
    assert sorted(set(train.get_gt_labels().tolist())) == list(range(6))
    assert val.test_mode
    with pytest.raises(ValueError, match="split='train'"):
        cls(data_root=root, split='test', fold=0)


def test_built_from_registry(tmp_path):
    root = str(make_cub(tmp_path))
    dataset = DATASETS.build(dict(type='CUBMetricDataset', data_root=root, split='test'))
    assert isinstance(dataset, CUBMetricDataset)


# -- missing and malformed files ---------------------------------------------------------------


@pytest.mark.parametrize(
    'cls,make,missing',
    [
        (CUBMetricDataset, make_cub, 'image_class_labels.txt'),
        (CUBMetricDataset, make_cub, 'images.txt'),
        (Cars196MetricDataset, make_cars, 'cars_annos.mat'),
        (SOPMetricDataset, make_sop, 'Ebay_train.txt'),
    ],
)
def test_missing_annotation_file_names_it_and_the_layout(tmp_path, cls, make, missing):
    root = make(tmp_path)
    os.remove(root / missing)
    with pytest.raises(FileNotFoundError, match=missing) as info:
        cls(data_root=str(root), split='train')
    assert 'Expected layout' in str(info.value)


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match='not a directory'):
        CUBMetricDataset(data_root=str(tmp_path / 'nope'))


@pytest.mark.parametrize(
    'cls,make,image',
    [
        (CUBMetricDataset, make_cub, 'images/002.Bird_2/img_1.jpg'),
        (Cars196MetricDataset, make_cars, 'car_ims/000003.jpg'),
        (SOPMetricDataset, make_sop, 'bicycle_final/2_0.JPG'),
    ],
)
def test_missing_image_is_named(tmp_path, cls, make, image):
    root = make(tmp_path)
    os.remove(root / image)
    with pytest.raises(FileNotFoundError, match='missing, e.g. .*' + image.split('/')[-1]):
        cls(data_root=str(root), split='train')


def test_malformed_cub_lines(tmp_path):
    root = make_cub(tmp_path)
    lines = (root / 'image_class_labels.txt').read_text().splitlines()
    (root / 'image_class_labels.txt').write_text('\n'.join(lines[:2] + ['3'] + lines[3:]))
    with pytest.raises(ValueError, match=r'malformed line 3 of .*image_class_labels.txt'):
        CUBMetricDataset(data_root=str(root))
    (root / 'image_class_labels.txt').write_text('\n'.join(lines[:2] + ['3 sparrow'] + lines[3:]))
    with pytest.raises(ValueError, match=r'malformed line 3 .*<class_id>'):
        CUBMetricDataset(data_root=str(root))
    (root / 'image_class_labels.txt').write_text('\n'.join(lines + ['999 1']))
    with pytest.raises(ValueError, match='listed in images.txt'):
        CUBMetricDataset(data_root=str(root))


def test_malformed_sop_and_cars(tmp_path):
    sop = make_sop(tmp_path / 'sop')
    text = (sop / 'Ebay_test.txt').read_text().splitlines()
    (sop / 'Ebay_test.txt').write_text('\n'.join(text[:2] + ['1 2 3'] + text[2:]))
    with pytest.raises(ValueError, match=r'malformed line 3 of .*Ebay_test.txt'):
        SOPMetricDataset(data_root=str(sop), split='test')
    (sop / 'Ebay_test.txt').write_text(text[0] + '\n')
    with pytest.raises(ValueError, match='lists no images'):
        SOPMetricDataset(data_root=str(sop), split='test')
    cars = tmp_path / 'cars'
    cars.mkdir()
    savemat(cars / 'cars_annos.mat', {'something_else': np.zeros(3)})
    with pytest.raises(ValueError, match=r'cannot read .*cars_annos.mat'):
        Cars196MetricDataset(data_root=str(cars))


def test_digits_dataset():
    train, test = DigitsMetricDataset('train'), DigitsMetricDataset('test', size=16)
    assert len(train) + len(test) == 1797
    assert train.metainfo['classes'] == ('0', '1', '2', '3', '4')
    assert test.metainfo['classes'] == ('5', '6', '7', '8', '9')
    sample = train.get_data_info(0)
    assert sample['img'].shape == (32, 32, 3) and sample['img'].dtype == np.uint8
    assert sample['img'].max() > 200  # real strokes, scaled from 0..16
    assert test.get_data_info(0)['img'].shape == (16, 16, 3)
    assert sorted(set(test.get_gt_labels().tolist())) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match='split'):
        DigitsMetricDataset('val')


def _bounding_box(img):
    ys, xs = np.nonzero(img[..., 0])
    return ys.max() - ys.min() + 1, xs.max() - xs.min() + 1


def test_digits_placed_and_cluttered_deterministically():
    placed = DigitsMetricDataset('test', size=48, digit_size=20)
    for i in range(0, len(placed), 97):
        img = placed.get_data_info(i)['img']
        assert img.shape == (48, 48, 3)
        height, width = _bounding_box(img)
        assert height <= 20 and width <= 20  # only the digit, somewhere on the canvas
    cluttered = DigitsMetricDataset('test', size=48, digit_size=20, clutter_strokes=6)
    again = DigitsMetricDataset('test', size=48, digit_size=20, clutter_strokes=6)
    other = DigitsMetricDataset('test', size=48, digit_size=20, clutter_strokes=6, seed=1)
    spread = [max(_bounding_box(cluttered.get_data_info(i)['img'])) for i in range(50)]
    assert np.mean(np.array(spread) > 20) > 0.9  # strokes reach beyond the digit's box
    assert all(
        np.array_equal(cluttered.get_data_info(i)['img'], again.get_data_info(i)['img'])
        for i in range(20)
    )
    assert not np.array_equal(cluttered.get_data_info(0)['img'], other.get_data_info(0)['img'])
    assert list(cluttered.get_gt_labels()) == list(placed.get_gt_labels())
    with pytest.raises(ValueError, match='digit_size'):
        DigitsMetricDataset('train', size=16, digit_size=20)
