"""A short PML training through the config runner (tools/train_pml.py's logic): it learns,
logs, saves, and resumes after an interruption."""

import glob
import os.path as osp

import torch

from gpo_plugin.pml.runner import build_session, load_config

OPTIONS = {
    'iterations_per_epoch': 8,
    'hooks.test_interval': 1,
    'hooks.num_images': 3,
    'lr_scheduler': None,
    'log_freq': 4,
}


def _session(work_dir, num_epochs, resume=False):
    cfg = load_config('configs/pml/digits_gsp.py', dict(OPTIONS, num_epochs=num_epochs))
    return build_session(cfg, str(work_dir), resume=resume)


def _map_at_r(session, epoch):
    accuracies = session.tester.test(
        {'val': session.datasets['val']},
        epoch,
        session.trainer.models['trunk'],
        session.trainer.models['embedder'],
    )
    return accuracies['val']['mean_average_precision_at_r_level0']


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
    assert trained > untrained + 0.05, (untrained, trained)


def test_every_pml_config_builds_its_model_and_loss():
    from gpo_plugin.pml import PoolingEmbedder, ZeroShotLossWrapper
    from gpo_plugin.pml.runner import build_loss, build_trunk

    for path in sorted(glob.glob('configs/pml/*.py')):
        cfg = load_config(path)
        embedder = PoolingEmbedder(**cfg.embedder)
        maps = build_trunk(cfg.trunk)(torch.zeros(2, 3, 32, 32))
        assert embedder(maps).shape == (2, cfg.embedder.embed_dim), path
        loss, _ = build_loss(cfg, cfg.embedder.embed_dim)
        is_gsp = cfg.embedder.pooler.type == 'GSP'
        assert isinstance(loss, ZeroShotLossWrapper) == is_gsp, path
