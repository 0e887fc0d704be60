"""PML side of docs/fault_tolerance.md: tools/train_pml.py killed with SIGKILL and resumed ends
bit for bit where the uninterrupted run ends; resume skips a broken state (saying so) and never
goes on with freshly initialised parts; PML's own model loading is safe."""

import logging
import multiprocessing
import os
import pickle
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from pytorch_metric_learning.utils import logging_presets
from torch import nn

from gpo_plugin.pml import checkpointing
from gpo_plugin.pml.trainers import MetricLossOnlyWithAttributes
from gpo_plugin.utils.checkpoints import UNSAFE_ENV, CheckpointError, UnsafeCheckpointError

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / 'configs' / 'pml' / 'digits_gsp.py')
# 64 training images: 2 iterations an epoch; validation (and PML's model saving) at epochs
# 2 and 4 only, so the states in between come from TrainingStateHook alone.
OPTIONS = [
    'train_cfg.max_epochs=4',
    'train_dataloader.dataset.indices=64',
    'val_dataloader.dataset.indices=64',
    'train_cfg.val_interval=2',
    'pml.hooks.pooling_weights=False',
    'model.neck.num_prototypes=4',
]


def _train_pml():
    sys.path.insert(0, str(ROOT / 'tools'))
    try:
        import train_pml
    finally:
        sys.path.pop(0)
    return train_pml


def _child(work_dir, resume, kill_at, log_file):
    """tools/train_pml.py in a forked process, SIGKILLed at (epoch, iteration) ``kill_at``."""
    handler = logging.FileHandler(log_file)
    logging.getLogger('PML').addHandler(handler)
    logging.getLogger('PML').setLevel(logging.INFO)
    if kill_at:
        step = MetricLossOnlyWithAttributes.forward_and_backward

        def forward_and_backward(self):
            if (self.epoch, self.iteration) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return step(self)

        MetricLossOnlyWithAttributes.forward_and_backward = forward_and_backward
    argv = [CONFIG, '--work-dir', str(work_dir), '--cfg-options', *OPTIONS]
    _train_pml().main([*argv, '--resume'] if resume else argv)


def _run(work_dir, resume=False, kill_at=None):
    log_file = Path(work_dir).parent / f'{Path(work_dir).name}.log'
    child = multiprocessing.get_context('fork').Process(
        target=_child, args=(work_dir, resume, kill_at, log_file)
    )
    child.start()
    child.join(timeout=600)
    return child.exitcode, log_file.read_text() if log_file.exists() else ''


def _final(work_dir):
    return torch.load(
        Path(work_dir) / 'saved_models' / 'training_state_epoch_4.pth', weights_only=True
    )['parts']


def _assert_equal(a, b, where=''):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_equal(a[key], b[key], f'{where}.{key}')
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal(x, y, f'{where}[{i}]')
    else:
        assert a == b, where


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_exact_and_skips_a_broken_state(tmp_path):
    code, _ = _run(tmp_path / 'straight')
    assert code == 0
    killed = tmp_path / 'killed'
    code, _ = _run(killed, kill_at=(3, 1))  # after epoch 2's state, in epoch 3's 2nd step
    assert code == -signal.SIGKILL
    states = killed / 'saved_models'
    assert sorted(p.name for p in states.glob('training_state_*')) == [
        'training_state_epoch_1.pth',
        'training_state_epoch_2.pth',
    ]
    first = torch.load(states / 'training_state_epoch_1.pth', weights_only=True)['parts']
    (states / 'training_state_epoch_2.pth').write_bytes(b'')  # as a non-atomic save would
    code, log = _run(killed, resume=True)
    assert code == 0
    assert 'training_state_epoch_2.pth is empty (0 bytes)' in log
    assert 'resumed from the end of epoch 1' in log
    straight, resumed = _final(tmp_path / 'straight'), _final(killed)
    _assert_equal(straight, resumed)
    trunk = straight['models']['trunk']  # and the comparison could fail: training moved on
    assert any(not torch.equal(first['models']['trunk'][k], v) for k, v in trunk.items())


def test_sampler_epoch_and_random_states_round_trip(tmp_path):
    from gpo_plugin.pml.data import ClassDisjointPMLSampler

    sampler = ClassDisjointPMLSampler(torch.arange(40) % 5, batch_size=8, num_per_class=4, seed=3)
    model = nn.Linear(3, 2)
    trainer = SimpleNamespace(
        epoch=2,
        models={'trunk': model},
        optimizers={'trunk_optimizer': torch.optim.AdamW(model.parameters())},
        loss_funcs={},
        sampler=sampler,
    )
    list(sampler), list(sampler)  # two passes: the counter moves on
    checkpointing.TrainingStateHook(str(tmp_path))(trainer)
    expected = (list(sampler), torch.rand(3), torch.randn(2).tolist())
    import random

    import numpy as np

    expected += (np.random.rand(2).tolist(), random.random())
    sampler.epoch = 0
    torch.manual_seed(99)
    start = checkpointing.resume_training(trainer, None, str(tmp_path), 'cpu')
    assert start == 3
    got = (list(sampler), torch.rand(3), torch.randn(2).tolist())
    got += (np.random.rand(2).tolist(), random.random())
    assert got[0] == expected[0] and torch.equal(got[1], expected[1]) and got[2:] == expected[2:]


def _hooks():
    return logging_presets.HookContainer(record_keeper=None)


def _trainer():
    torch.manual_seed(0)
    return SimpleNamespace(
        models={'trunk': nn.Linear(3, 2)}, loss_funcs={'metric_loss': nn.Linear(2, 2)}
    )


def test_nothing_to_resume_from_is_said(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger='PML'):
        assert checkpointing.resume_training(_trainer(), _hooks(), str(tmp_path), 'cpu') == 1
    assert 'nothing to resume from' in caplog.text and 'from scratch' in caplog.text


def test_incomplete_pml_saved_models_are_refused(tmp_path):
    saved = _trainer()
    _hooks().save_models(saved, str(tmp_path), 3)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ['metric_loss_3.pth', 'trunk_3.pth']
    (tmp_path / 'metric_loss_3.pth').unlink()  # "Could not LOAD" and a fresh loss in PML
    with pytest.raises(CheckpointError, match=r'metric_loss_3.pth not found'):
        checkpointing.resume_training(_trainer(), _hooks(), str(tmp_path), 'cpu')
    (tmp_path / 'metric_loss_3.pth').write_bytes(b'')  # PML: a bare EOFError
    with pytest.raises(CheckpointError, match=r'metric_loss_3.pth is empty'):
        checkpointing.resume_training(_trainer(), _hooks(), str(tmp_path), 'cpu')


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pml_best_model_loading_never_runs_code(tmp_path, monkeypatch):
    marker = tmp_path / 'pwned'
    saved = _trainer()
    _hooks().save_models(saved, str(tmp_path), 'best2')
    evil = {**saved.models['trunk'].state_dict(), 'x': _RunsCode(marker)}
    torch.save(evil, tmp_path / 'trunk_best2.pth', pickle_module=pickle)
    monkeypatch.setenv(UNSAFE_ENV, '1')
    with pytest.raises(UnsafeCheckpointError, match=r'trunk_best2.pth .*GLOBAL pathlib'):
        _hooks().load_latest_saved_models(_trainer(), str(tmp_path), 'cpu', best=True)
    assert not marker.exists()
    with pytest.raises(SystemExit, match=UNSAFE_ENV):
        _train_pml().main([CONFIG, '--work-dir', str(tmp_path / 'w'), '--resume'])
    assert not marker.exists()


def test_pml_saves_are_atomic(tmp_path, monkeypatch):
    saved = _trainer()
    _hooks().save_models(saved, str(tmp_path), 1)
    before = (tmp_path / 'trunk_1.pth').read_bytes()

    def killed_mid_write(obj, f):
        f.write(b'partial')
        raise KeyboardInterrupt  # the process dies while torch.save writes

    monkeypatch.setattr(torch, 'save', killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        _hooks().save_models(saved, str(tmp_path), 1)
    assert (tmp_path / 'trunk_1.pth').read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['metric_loss_1.pth', 'trunk_1.pth']
