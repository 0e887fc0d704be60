"""The CUB / Cars196 / SOP configs (conventional 512-d and MLRC 128-d, GSP and average pooling):
they parse, build, run a training step on tiny images, and their datasets read the layouts."""

import glob
import os

import pytest
import torch
from conftest import make_cars, make_cub, make_sop
from mmengine.config import Config
from mmpretrain.structures import DataSample

from gpo_plugin.models import MetricLearner
from gpo_plugin.models.necks import GSP, AvgPooling
from gpo_plugin.registry import DATASETS, METRICS, MODELS

DATASET_CLASSES = {'cub': 100, 'cars': 98, 'sop': 11318, 'inshop': 3997}
CUSTOMARY_RECALL = {
    'cub': (1, 2, 4, 8),
    'cars': (1, 2, 4, 8),
    'sop': (1, 10, 100, 1000),
    'inshop': (1, 10, 20, 30, 40),
}
CONFIGS = sorted(
    os.path.basename(p)[:-3] for p in glob.glob('configs/dml_*_*.py') if 'digits' not in p
)


def test_all_dml_configs_are_there():
    expected = {
        f'dml_{pool}_{ds}{suffix}'
        for pool in ('gsp', 'avg')
        for ds in DATASET_CLASSES
        for suffix in ('', '_mlrc')
    }
    assert set(CONFIGS) == expected


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_the_intended_model(name):
    cfg = Config.fromfile(f'configs/{name}.py')
    assert cfg.default_scope == 'gpo_plugin'
    assert cfg.custom_imports == dict(imports=['gpo_plugin'], allow_failed_imports=False)
    _, pool, dataset = name.split('_')[:3]
    mlrc = name.endswith('_mlrc')
    embed_dim = 128 if mlrc else 512
    model = MODELS.build(cfg.model)
    assert isinstance(model, MetricLearner)
    assert model.backbone.norm_eval  # frozen BatchNorm
    if pool == 'gsp':
        assert isinstance(model.neck, GSP) and model.neck.out_channels == embed_dim
        assert model.neck.num_prototypes == (128 if dataset in ('sop', 'inshop') else 64)
        assert model.head.zero_shot_loss.num_classes == DATASET_CLASSES[dataset]
        assert model.head.metric_loss_weight == 0.9
    else:
        assert isinstance(model.neck, AvgPooling) and model.head.zero_shot_loss is None
        assert model.head.projection.out_features == embed_dim
    assert type(model.head.metric_loss).__name__ == 'CrossBatchMemory'
    assert model.head.metric_loss.embedding_size == embed_dim
    train, val = cfg.train_dataloader.dataset, cfg.val_dataloader.dataset
    assert train.split == 'train'
    if mlrc:
        assert (train.fold, train.fold_role, val.fold, val.fold_role) == (0, 'train', 0, 'val')
        assert cfg.test_dataloader.dataset.split == 'test'
    else:
        assert val.split == 'test' and 'fold' not in val
    assert cfg.train_dataloader.sampler.type == 'ClassDisjointSampler'


@pytest.mark.parametrize('name', CONFIGS)
def test_config_reports_the_customary_recall_set(name):
    dataset = name.split('_')[2]
    cfg = Config.fromfile(f'configs/{name}.py')
    for key in ('val_evaluator', 'test_evaluator'):
        metric = METRICS.build(cfg[key])
        assert metric.recall_ks == CUSTOMARY_RECALL[dataset], key
    assert METRICS.build(cfg.test_evaluator).protocol == (
        'query_gallery' if dataset == 'inshop' else 'leave_one_out'
    )


@pytest.mark.parametrize('name', ['dml_gsp_cub', 'dml_avg_sop_mlrc'])
def test_config_model_trains_a_step(name):
    cfg = Config.fromfile(f'configs/{name}.py')
    model = MODELS.build(cfg.model)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    images = torch.randint(0, 255, (8, 3, 64, 64), dtype=torch.uint8)
    samples = [DataSample().set_gt_label(i // 2) for i in range(8)]
    data = model.data_preprocessor(dict(inputs=list(images), data_samples=samples), True)
    losses = model(**data, mode='loss')
    assert set(losses) == ({'loss_metric', 'loss_zsr'} if 'gsp' in name else {'loss_metric'})
    sum(losses.values()).backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        predictions = model(**data, mode='predict')
    assert predictions[0].embedding.shape == (128 if 'mlrc' in name else 512,)


@pytest.mark.parametrize(
    'dataset,make', [('cub', make_cub), ('cars', make_cars), ('sop', make_sop)]
)
def test_config_datasets_read_the_layout(tmp_path, dataset, make):
    root = str(make(tmp_path))
    cfg = Config.fromfile(f'configs/dml_gsp_{dataset}_mlrc.py')
    for loader, count in (('train_dataloader', 12), ('val_dataloader', 4), ('test_dataloader', 6)):
        dataset_cfg = dict(cfg[loader].dataset, data_root=root)
        built = DATASETS.build(dataset_cfg)
        assert len(built) == count
        sample = built[0]
        assert sample['inputs'].shape[0] == 3


@pytest.mark.parametrize('pool', ['gsp', 'avg'])
def test_cluttered_digits_configs(pool):
    cfg = Config.fromfile(f'configs/dml_{pool}_digits_clutter.py')
    model = MODELS.build(cfg.model)
    assert isinstance(model.neck, GSP if pool == 'gsp' else AvgPooling)
    for loader, split in (('train_dataloader', 'train'), ('test_dataloader', 'test')):
        dataset = cfg[loader].dataset
        assert (dataset.split, dataset.size, dataset.digit_size) == (split, 48, 20)
        assert dataset.clutter_strokes == 6
    assert cfg.train_dataloader.sampler.type == 'ClassDisjointSampler'
    with torch.no_grad():
        out = model.extract_feat(torch.randn(2, 3, 48, 48))
    assert out[-1].shape == (2, 64 if pool == 'avg' else 32)
