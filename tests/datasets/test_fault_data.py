"""Bad input data gets errors naming the file, line, image or sample (docs/fault_tolerance.md):
precomputed features and captions, DML annotations and images, the up-front dataset scan, the
non-finite loss stop."""

import math

import numpy as np
import pytest
import torch
from conftest import DML_PIPELINE, copy_split, make_cub, make_sop, precomp_dataset
from mmengine.structures import BaseDataElement

from gpo_plugin.cli.check_dataset import check_image_file
from gpo_plugin.cli.check_dataset import main as check_dataset
from gpo_plugin.datasets import CUBMetricDataset, RandomRegionDrop, SOPMetricDataset
from gpo_plugin.engine.non_finite_loss_hook import (
    NonFiniteLossError,
    NonFiniteLossHook,
    batch_sample_ids,
)

# -- precomputed features ------------------------------------------------------------------------


@pytest.mark.parametrize('bad', [math.nan, math.inf, -math.inf])
def test_non_finite_feature_names_the_image(precomp_demo, tmp_path, bad, monkeypatch):
    import gpo_plugin.datasets.precomputed_caption_dataset as module

    root = copy_split(precomp_demo, tmp_path)
    ims = np.load(root / 'train_ims.npy')
    ims[7, 3, 5] = bad
    np.save(root / 'train_ims.npy', ims)
    monkeypatch.setattr(module, '_CHUNK', 36 * 16 * 3)  # 3 images a chunk: crosses chunks
    with pytest.raises(ValueError, match=r'train_ims.npy: image 7 .* region 3, channel 5'):
        precomp_dataset(root)
    assert len(precomp_dataset(root, max_images=7)) == 35  # the bad image is not used: accepted
    assert len(precomp_dataset(root, check_finite=False)) == 60


@pytest.mark.parametrize('dtype', ['int64', 'int8', 'bool', 'complex64', 'U3'])
def test_non_float_features_are_refused(precomp_demo, tmp_path, dtype):
    root = copy_split(precomp_demo, tmp_path)
    np.save(root / 'train_ims.npy', np.load(root / 'train_ims.npy').astype(dtype))
    with pytest.raises(TypeError, match=rf'train_ims.npy holds {np.dtype(dtype)} values'):
        precomp_dataset(root)


@pytest.mark.parametrize('dtype', ['float16', 'float32', 'float64'])
def test_float_features_are_accepted(precomp_demo, tmp_path, dtype):
    root = copy_split(precomp_demo, tmp_path)
    ims = np.load(root / 'train_ims.npy')
    np.save(root / 'train_ims.npy', ims.astype(dtype))
    regions = precomp_dataset(root).get_data_info(6)['img']
    assert regions.dtype == np.float32
    np.testing.assert_allclose(regions, ims[1], rtol=1e-3, atol=1e-3)


# -- captions and ids ----------------------------------------------------------------------------


def test_non_utf8_caption_names_file_and_line(precomp_demo, tmp_path):
    root = copy_split(precomp_demo, tmp_path)
    lines = (root / 'train_caps.txt').read_bytes().splitlines()
    lines[12] = 'un caf\u00e9 cr\u00e8me'.encode('latin-1')
    (root / 'train_caps.txt').write_bytes(b'\n'.join(lines) + b'\n')
    with pytest.raises(ValueError, match=r'train_caps.txt:13: not UTF-8'):
        precomp_dataset(root)


@pytest.mark.parametrize('blank', ['', '   \t'])
def test_empty_caption_names_file_and_line(precomp_demo, tmp_path, blank):
    root = copy_split(precomp_demo, tmp_path)
    lines = (root / 'train_caps.txt').read_text().splitlines()
    lines[3] = blank
    (root / 'train_caps.txt').write_text('\n'.join(lines) + '\n\n')  # trailing blank is fine
    with pytest.raises(ValueError, match=r'train_caps.txt:4: empty'):
        precomp_dataset(root)


def test_duplicate_image_ids(precomp_demo, tmp_path):
    root = copy_split(precomp_demo, tmp_path)
    ids = (root / 'train_ids.txt').read_text().split()
    assert len(ids) == 12  # one per image
    ids[5] = ids[2]
    (root / 'train_ids.txt').write_text('\n'.join(ids) + '\n')
    with pytest.raises(
        ValueError, match=rf"train_ids.txt:6: image id '{ids[2]}' already .* line 3"
    ):
        precomp_dataset(root)


def test_per_caption_ids_must_repeat_their_image_id(precomp_demo, tmp_path):
    root = copy_split(precomp_demo, tmp_path)
    ids = [f'{100 + i}' for i in range(12) for _ in range(5)]
    (root / 'train_ids.txt').write_text('\n'.join(ids) + '\n')
    assert precomp_dataset(root).metainfo['image_ids'][:2] == ['100', '101']
    ids[8] = '109'  # caption 3 of image 1
    (root / 'train_ids.txt').write_text('\n'.join(ids) + '\n')
    with pytest.raises(ValueError, match=r"train_ids.txt:9: id '109' differs from '101' on line 6"):
        precomp_dataset(root)


def test_region_drop_on_an_image_without_regions():
    with pytest.raises(ValueError, match='image 4 has no regions'):
        RandomRegionDrop()(dict(img=np.zeros((0, 8), np.float32), img_idx=4))


# -- DML annotations and images ------------------------------------------------------------------


def test_duplicate_cub_image_id(tmp_path):
    cub = make_cub(tmp_path)
    lines = (cub / 'images.txt').read_text().splitlines()
    lines[4] = lines[1].split()[0] + ' ' + lines[4].split()[1]  # id 2 again, another image
    (cub / 'images.txt').write_text('\n'.join(lines) + '\n')
    with pytest.raises(ValueError, match=r'line 5 of .*images.txt.*unique image_id.*line 2'):
        CUBMetricDataset(str(cub))
    cub = make_cub(tmp_path / 'labels')
    labels = (cub / 'image_class_labels.txt').read_text().splitlines()
    labels.append('1 150')  # relabels image 1
    (cub / 'image_class_labels.txt').write_text('\n'.join(labels) + '\n')
    with pytest.raises(ValueError, match=r'image_class_labels.txt.*unique image_id \(1 is'):
        CUBMetricDataset(str(cub))


def test_sop_class_in_both_splits_and_missing_header(tmp_path):
    sop = make_sop(tmp_path, test_ids=(8, 11320))  # class 8 also trains
    for split in ('train', 'test'):
        with pytest.raises(ValueError, match=r'1 class id\(s\) appear in both.*\[8\]'):
            SOPMetricDataset(str(sop), split=split)
    sop = make_sop(tmp_path / 'header')
    lines = (sop / 'Ebay_train.txt').read_text().splitlines()
    (sop / 'Ebay_train.txt').write_text('\n'.join(lines[1:]) + '\n')
    with pytest.raises(ValueError, match=r'line 1 of .*Ebay_train.txt.*the header line'):
        SOPMetricDataset(str(sop))


def test_empty_and_corrupt_images(tmp_path):
    cub = make_cub(tmp_path)
    image = cub / 'images' / '003.Bird_3' / 'img_1.jpg'
    image.write_bytes(b'')
    with pytest.raises(ValueError, match=r'1 image file\(s\) are empty .*003.Bird_3/img_1.jpg'):
        CUBMetricDataset(str(cub))
    image.write_bytes(b'\xff\xd8\xff\xe0 this is not a jpeg')
    ds = CUBMetricDataset(str(cub), pipeline=DML_PIPELINE)
    index = [i for i in range(len(ds)) if ds.get_data_info(i)['img_path'] == str(image)][0]
    with pytest.raises(RuntimeError, match=r'cannot load .*003.Bird_3/img_1.jpg'):
        ds[index]
    assert ds[index - 1]['data_samples'].gt_label.item() == ds.get_data_info(index - 1)['gt_label']


def test_check_image_file(tmp_path):
    import cv2

    good = tmp_path / 'good.jpg'
    cv2.imwrite(str(good), np.random.default_rng(0).integers(0, 255, (40, 30, 3), np.uint8))
    assert check_image_file(str(good)) is None
    data = good.read_bytes()
    cases = {
        'empty.jpg': (b'', 'empty'),
        'garbage.jpg': (b'not an image at all', 'cannot be decoded'),
        'cut.jpg': (data[: len(data) * 2 // 3], 'corrupt or truncated'),
    }
    for name, (content, problem) in cases.items():
        (tmp_path / name).write_bytes(content)
        assert problem in check_image_file(str(tmp_path / name))
    assert 'cannot be read' in check_image_file(str(tmp_path / 'missing.jpg'))


def test_check_dataset_tool_lists_every_bad_image(tmp_path, capsys):
    from pathlib import Path

    config = Path(__file__).resolve().parents[2] / 'configs' / 'dml_avg_cub.py'
    cub = make_cub(tmp_path)
    args = [str(config), '--data-root', str(cub), '--loaders', 'train_dataloader']
    assert check_dataset(args) == 0
    assert 'All samples are readable' in capsys.readouterr().out
    bad = [cub / 'images' / '002.Bird_2' / 'img_0.jpg', cub / 'images' / '005.Bird_5' / 'img_1.jpg']
    bad[0].write_bytes(b'garbage')
    bad[1].write_bytes(bad[1].read_bytes()[:100])
    assert check_dataset(args) == 1
    out = capsys.readouterr().out
    assert f'{bad[0]} cannot be decoded' in out and f'{bad[1]}' in out
    assert '2 problem(s) found' in out


# -- non-finite loss -----------------------------------------------------------------------------


class _Runner:
    iter, epoch = 41, 3


def test_non_finite_loss_stops_with_iteration_and_ids():
    hook = NonFiniteLossHook()
    batch = dict(
        inputs=dict(),
        data_samples=dict(img_idx=torch.tensor([3, 9]), cap_idx=torch.tensor([15, 47])),
    )
    hook.after_train_iter(_Runner, 5, batch, dict(loss=torch.tensor(2.0)))  # finite: nothing
    with pytest.raises(NonFiniteLossError) as error:
        hook.after_train_iter(_Runner, 5, batch, dict(loss=torch.tensor(math.nan)))
    message = str(error.value)
    assert 'iteration 42 (epoch 4, batch 5' in message
    assert 'img_idx=[3, 9]' in message and 'cap_idx=[15, 47]' in message
    with pytest.raises(NonFiniteLossError, match='loss_zero_shot'):
        hook.after_train_iter(
            _Runner, 0, batch, dict(loss=torch.tensor(1.0), loss_zero_shot=torch.tensor(math.inf))
        )


def test_batch_sample_ids_of_mmpretrain_samples():
    samples = [BaseDataElement(metainfo=dict(sample_idx=i)) for i in (4, 0, 17)]
    assert batch_sample_ids(dict(inputs=None, data_samples=samples)) == {'sample_idx': [4, 0, 17]}
    assert batch_sample_ids(dict(inputs=None, data_samples=[BaseDataElement()])) == {}
