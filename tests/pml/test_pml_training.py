"""A short PML training through the config runner (tools/train_pml.py's logic) from the Runner
configs: it learns, logs, saves, resumes after an interruption, and computes the loss the
Runner's model computes on the same weights and batch."""

import glob
import os.path as osp

import pytest
import torch
from mmpretrain.structures import DataSample

from gpo_plugin.pml import MetricLossOnlyWithAttributes, ZeroShotLossWrapper
from gpo_plugin.pml.runner import (
    build_embedder,
    build_loss,
    build_optimizers,
    build_schedulers,
    build_session,
    build_trunk,
    embedder_config,
    load_config,
)
from gpo_plugin.registry import MODELS

OPTIONS = {
    'pml.iterations_per_epoch': 8,
    'train_cfg.val_interval': 1,
    'pml.hooks.num_images': 3,
    'param_scheduler': [],
    'pml.log_freq': 4,
}


def _session(work_dir, num_epochs, resume=False):
    options = dict(OPTIONS, **{'train_cfg.max_epochs': num_epochs})
    cfg = load_config('configs/pml/digits_gsp.py', options)
    return build_session(cfg, str(work_dir), resume=resume)


def _map_at_r(session, epoch):
    accuracies = session.tester.test(
        {'val': session.datasets['val']},
        epoch,
        session.trainer.models['trunk'],
        session.trainer.models['embedder'],
    )
    return accuracies['val']['mean_average_precision_at_r_level0']


@pytest.mark.slow  # 24 training iterations and four validations (~30 s)
def test_training_improves_saves_and_resumes(tmp_path):
    first = _session(tmp_path, num_epochs=1)
    untrained = _map_at_r(first, epoch=-1)
    accuracies = first.run()
    assert set(accuracies) == {
        'epoch',
        'precision_at_1_level0',
        'r_precision_level0',
        'mean_average_precision_at_r_level0',
    }
    assert accuracies['epoch'] == 1
    saved = torch.load(osp.join(tmp_path, 'saved_models', 'embedder_1.pth'), weights_only=True)
    assert bool(saved['pooler.prototypes_initialised'])

    # "Killed" after epoch 1: a new process resumes from the saved models at epoch 2.
    second = _session(tmp_path, num_epochs=3, resume=True)
    assert second.start_epoch == 2
    loaded = second.trainer.models['embedder'].state_dict()
    for key, value in saved.items():
        torch.testing.assert_close(loaded[key], value)
    accuracies = second.run()
    assert accuracies['epoch'] == 3
    names = {osp.basename(p) for p in glob.glob(osp.join(tmp_path, 'saved_models', 'trunk_*'))}
    assert 'trunk_3.pth' in names and 'trunk_1.pth' not in names
    assert osp.isfile(osp.join(tmp_path, 'pooling_weights', 'epoch_3_pooler.png'))
    assert glob.glob(osp.join(tmp_path, 'tensorboard', 'events.out.tfevents.*'))
    history = second.hooks.get_accuracy_history(second.tester, 'val')
    assert history['epoch'] == [-1, 1, 2, 3]  # -1: the untrained baseline above
    trained = accuracies['mean_average_precision_at_r_level0']
    # 24 iterations from the Runner's initialisation (mmpretrain's Kaiming init): a small but
    # clear gain over the untrained model (seed 0: 0.13 -> 0.17).
    assert trained > untrained + 0.02, (untrained, trained)


@pytest.mark.parametrize('path', sorted(glob.glob('configs/pml/*.py')))
def test_every_pml_config_builds_its_model_and_loss(path):
    cfg = load_config(path)
    embed_cfg = embedder_config(cfg.model)
    embedder = build_embedder(embed_cfg)
    maps = build_trunk(cfg.model.backbone)(torch.zeros(2, 3, 32, 32))
    assert embedder(maps).shape == (2, embed_cfg['embed_dim']), path
    loss = build_loss(cfg.model.head, embed_cfg['embed_dim'])
    is_gsp = cfg.model.neck.type == 'GSP'
    assert isinstance(loss, ZeroShotLossWrapper) == is_gsp, path


@pytest.mark.parametrize('path', sorted(glob.glob('configs/dml_*.py')))
def test_every_runner_dml_config_is_read_by_the_pml_side(path):
    # The backbone is not built here (ResNet-50 configs point at pretrained weights).
    cfg = load_config(path)
    embed_cfg = embedder_config(cfg.model)
    loss = build_loss(cfg.model.head, embed_cfg['embed_dim'])
    assert isinstance(loss, ZeroShotLossWrapper) == bool(cfg.model.head.get('zero_shot_loss'))
    metric = loss.loss if isinstance(loss, ZeroShotLossWrapper) else loss
    if metric.uses_memory:  # the memory holds embeddings of the size the Runner's head sees
        head = cfg.model.head
        head_size = head.get('out_channels') or head.get('in_channels')
        assert metric.loss.embedding_size == embed_cfg['embed_dim'] == head_size, path
    schedulers = build_schedulers(cfg.get('param_scheduler'), {})
    assert schedulers == {}


def _copy_runner_weights(model, trunk, embedder, loss):
    """The Runner model's weights into the PML parts (backbone -> trunk, neck -> pooler,
    head.projection -> embedder.projection, head.criterion -> loss)."""
    trunk.body.load_state_dict(model.backbone.state_dict())
    embedder.pooler.load_state_dict(model.neck.state_dict())
    if model.head.projection is not None:
        embedder.projection.load_state_dict(model.head.projection.state_dict())
    loss.load_state_dict(model.head.criterion.state_dict())


@pytest.mark.parametrize('config', ['configs/pml/digits_gsp.py', 'configs/pml/digits_avg.py'])
def test_pml_trainer_loss_equals_the_runner_models_loss(config):
    cfg = load_config(config)
    if cfg.model.neck.type == 'GSP':
        cfg.model.neck.kcenter_init = False
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).double()
    embed_cfg = embedder_config(cfg.model)
    trunk = build_trunk(cfg.model.backbone).double()
    embedder = build_embedder(embed_cfg).double()
    loss = build_loss(cfg.model.head, embed_cfg['embed_dim']).double()
    _copy_runner_weights(model, trunk, embedder, loss)
    labels = torch.arange(4).repeat_interleave(8)  # two class-disjoint halves
    images = torch.randn(32, 3, 32, 32, dtype=torch.float64)
    samples = [DataSample().set_gt_label(int(y)) for y in labels]
    expected = sum(model.loss(images, samples).values())

    trainer = MetricLossOnlyWithAttributes(
        models={'trunk': trunk, 'embedder': embedder},
        optimizers={},
        batch_size=32,
        loss_funcs={'metric_loss': loss},
        dataset=torch.utils.data.TensorDataset(images, labels),
        data_device=torch.device('cpu'),
    )
    trainer.losses = {}
    trainer.calculate_loss((images, labels))
    torch.testing.assert_close(trainer.losses['metric_loss'], expected)


def test_config_errors_name_the_key_and_the_fix(tmp_path):
    old = tmp_path / 'old.py'
    old.write_text("trunk = dict(type='ResNet_CIFAR', depth=18)\nembedder = dict()\n")
    with pytest.raises(KeyError, match='old configs/pml schema'):
        load_config(str(old))
    partial = tmp_path / 'partial.py'
    partial.write_text(f"_base_ = ['{osp.abspath('configs/dml_gsp_digits.py')}']\n")
    with pytest.raises(ValueError, match='model.head.type'):
        load_config(str(partial), {'model.head.type': 'VSEHead'})
    cfg = load_config(str(partial))
    with pytest.raises(ValueError, match='paramwise_cfg'):
        build_optimizers(dict(cfg.optim_wrapper, paramwise_cfg=dict()), {}, {})
    with pytest.raises(ValueError, match='one epoch-wise scheduler'):
        build_schedulers([dict(type='LinearLR'), dict(type='CosineAnnealingLR')], {})
    del cfg.model.neck['in_channels']
    with pytest.raises(ValueError, match='model.neck.in_channels'):
        embedder_config(cfg.model)
