"""GPO as a neck inside stock mmpretrain models, trained and resumed by mmengine's Runner,
and mmengine checkpoints loaded with safe torch.load."""

import os
import pickle
import textwrap

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner, load_checkpoint
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS

from gpo_plugin.models.necks import GPO, MaxPooling
from gpo_plugin.registry import MODELS


def write_image_folder(root, classes=2, per_class=6, size=96):
    """A tiny ImageNet-style folder: one colour tint per class plus noise. 96 px gives
    ResNet-18 a 3x3 map, so GPO pools sets of 9 (a set of 1 has nothing to learn)."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f'class_{c}'
        folder.mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            image[..., c % 3] += 150
            cv2.imwrite(str(folder / f'{i}.png'), image)


CONFIG = """
_base_ = ['mmpretrain::_base_/models/resnet18.py', 'mmpretrain::_base_/default_runtime.py']
custom_imports = dict(imports=['gpo_plugin'], allow_failed_imports=False)
model = dict(neck=dict(_delete_=True, type='GPO'), head=dict(num_classes=2, topk=(1,)))
train_dataloader = dict(
    batch_size=4, num_workers=0,
    dataset=dict(type='CustomDataset', data_root='{data_root}', with_label=True,
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]),
    sampler=dict(type='DefaultSampler', shuffle=True))
train_cfg = dict(by_epoch=True, max_epochs={max_epochs})
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9))
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
randomness = dict(seed=0)
"""


def make_runner(tmp_path, max_epochs, resume=False):
    config_file = tmp_path / 'gpo_resnet18.py'
    config_file.write_text(CONFIG.format(data_root=tmp_path / 'images', max_epochs=max_epochs))
    cfg = Config.fromfile(str(config_file))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.resume = resume
    return Runner.from_cfg(cfg)


def test_gpo_neck_in_mmpretrain_config_trains_and_resumes(tmp_path):
    write_image_folder(tmp_path / 'images')
    runner = make_runner(tmp_path, max_epochs=1)
    assert runner.cfg.default_scope == 'mmpretrain'  # a stock mmpretrain config scope
    assert isinstance(runner.model.neck, GPO)
    before = runner.model.neck.linear.weight.detach().clone()
    runner.train()
    trained = runner.model.neck.linear.weight.detach().clone()
    assert not torch.equal(before, trained), 'GPO parameters were not optimised'
    checkpoint = tmp_path / 'work' / 'epoch_1.pth'
    assert checkpoint.exists()
    iters_per_epoch = runner.iter

    resumed = make_runner(tmp_path, max_epochs=2, resume=True)
    resumed.train()
    assert resumed.epoch == 2 and resumed.iter == 2 * iters_per_epoch
    state = torch.load(checkpoint, weights_only=True)  # safe loading, our allow-list
    torch.testing.assert_close(state['state_dict']['neck.linear.weight'], trained)
    assert 'message_hub' in state and state['meta']['epoch'] == 1


class Payload:
    def __reduce__(self):
        return (os.system, ('touch pwned_by_checkpoint',))


def test_checkpoint_with_arbitrary_pickled_object_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': GPO().state_dict(), 'meta': Payload()}, path)
    with pytest.raises(pickle.UnpicklingError, match='system'):
        load_checkpoint(GPO(), str(path))
    assert not (tmp_path / 'pwned_by_checkpoint').exists()


def test_getattr_in_checkpoint_only_reaches_history_buffer_methods(tmp_path):
    from mmengine.logging.history_buffer import HistoryBuffer

    class Reach:
        def __reduce__(self):
            return (getattr, (HistoryBuffer, '__init__'))

    path = tmp_path / 'reach.pth'
    torch.save({'x': Reach()}, path)
    with pytest.raises(pickle.UnpicklingError, match='statistics methods'):
        torch.load(path, weights_only=True)


def test_gpo_in_image_to_image_retriever_under_mmpretrain_scope():
    cfg = dict(
        type='ImageToImageRetriever',
        image_encoder=[dict(type='ResNet', depth=18, out_indices=(3,)), dict(type='GPO')],
        head=dict(type='LinearClsHead', num_classes=3, in_channels=512),
        prototype=torch.randn(5, 512),
    )
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MMPRETRAIN_MODELS.build(cfg)
    feats = model.extract_feat(torch.randn(2, 3, 32, 32))
    assert isinstance(model.image_encoder[1], GPO) and feats[0].shape == (2, 512)


def test_registry_scopes_and_misspelt_names(monkeypatch):
    assert MMPRETRAIN_MODELS.get('GPO') is GPO  # exported into mmpretrain's scope
    assert MMPRETRAIN_MODELS.get('gpo_plugin.MaxPooling') is MaxPooling
    logged = []
    monkeypatch.setattr('gpo_plugin.registry.print_log', lambda msg, **kw: logged.append(msg))
    with DefaultScope.overwrite_default_scope('gpo_plugin'):
        classifier = MODELS.build(
            dict(
                type='ImageClassifier',  # mmpretrain model, our scope
                backbone=dict(type='ResNet', depth=18),
                neck=dict(type='KMaxPooling', k=4),
            )
        )
        assert type(classifier.neck).__name__ == 'KMaxPooling'
        with pytest.raises(KeyError, match='GPOO is not in the gpo_plugin::model registry'):
            MODELS.build(dict(type='GPOO'))
    assert len(logged) == 1 and 'Did you mean: GPO?' in logged[0]
    assert 'Registered by gpo_plugin: AvgPooling,' in logged[0]


def test_config_file_builds_under_plugin_scope(tmp_path):
    config = tmp_path / 'plugin_scope.py'
    config.write_text(
        textwrap.dedent("""
        default_scope = 'gpo_plugin'
        custom_imports = dict(imports=['gpo_plugin'], allow_failed_imports=False)
        model = dict(type='ImageClassifier', backbone=dict(type='ResNet', depth=18),
                     neck=dict(type='GPO', d_pe=16, d_hidden=8))
    """)
    )
    cfg = Config.fromfile(str(config))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    assert model.neck.gru.hidden_size == 8


def test_checkpoint_loads_in_a_fresh_process_before_any_history_buffer(tmp_path):
    """HistoryBuffer fills its method table lazily; loading must not depend on it."""
    import subprocess
    import sys

    from mmengine.logging import HistoryBuffer

    path = tmp_path / 'hub.pth'
    torch.save({'message_hub': {'loss': HistoryBuffer([1.0, 2.0], [1, 1])}}, path)
    code = (
        'import gpo_plugin, torch, sys; '
        f'buffer = torch.load({str(path)!r}, weights_only=True)["message_hub"]["loss"]; '
        'sys.exit(0 if buffer.mean() == 1.5 else 1)'
    )
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_mmpretrain_retrieval_recall_runs_on_the_pinned_numpy():
    """mmpretrain 1.2's retrieval metric calls ``np.in1d`` (gone in numpy 2.4): the numpy pin in
    pyproject.toml keeps ImageToImageRetriever validation working."""
    from mmpretrain.evaluation.metrics import RetrievalRecall

    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.1, 0.7]])
    recall = RetrievalRecall.calculate(scores, [[0], [1]], topk=(1, 2), target_indices=True)
    # Row 0 ranks class 0 first; row 1 ranks class 1 last (third).
    assert [float(r) for r in recall] == [50.0, 50.0]
