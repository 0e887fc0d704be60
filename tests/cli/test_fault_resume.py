"""Fault tolerance of training (docs/fault_tolerance.md): runs killed with SIGKILL and resumed
equal uninterrupted runs; checkpoints are written atomically; broken checkpoints are skipped or
named; loading is safe (weights_only) and strict."""

import json
import os
import pickle
import random
import signal
import warnings
from pathlib import Path
from unittest.mock import MagicMock

import pytest
import torch
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
from mmengine.runner.checkpoint import _load_checkpoint
from train_until_killed import KillAtIterHook  # noqa: F401  (registers the hook)

from gpo_plugin.cli import runner_config
from gpo_plugin.cli import test as test_cli
from gpo_plugin.cli import train as train_cli
from gpo_plugin.engine import atomic_checkpoint_hook
from gpo_plugin.engine.sample_seed_hook import SampleSeedHook, SeedSample
from gpo_plugin.utils.checkpoints import (
    UNSAFE_ENV,
    CheckpointError,
    resolve_resume,
    safe_torch_load,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / 'configs'


def vse_args(data, epochs=3, workers=0, extra=()):
    root, vocab = data
    opts = [
        f'model.txt_enc.vocab_file={vocab}',
        f'train_cfg.max_epochs={epochs}',
        'train_cfg.val_interval=1',
        'warmup_epochs=1',
        'custom_hooks.0.warmup_epochs=1',
        'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.interval=1',
        'train_dataloader.batch_size=32',
        f'train_dataloader.num_workers={workers}',
        f'train_dataloader.persistent_workers={workers > 0}',
        'test_evaluator.fold_size=10',
        f'vocab_file={vocab}',
        *extra,
    ]
    return [str(CONFIGS / 'vse_gpo_demo.py'), '--data-root', str(root), '--cfg-options', *opts]


def dml_args(epochs=3, workers=0):
    opts = [
        f'train_cfg.max_epochs={epochs}',
        'train_cfg.val_interval=1',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.logger.interval=1',
        # 64 images, 2 iterations an epoch; a smaller GSP.
        'train_dataloader.dataset.indices=64',
        'val_dataloader.dataset.indices=64',
        'test_dataloader.dataset.indices=64',
        'model.neck.num_prototypes=4',
        f'train_dataloader.num_workers={workers}',
        f'train_dataloader.persistent_workers={workers > 0}',
    ]
    return [str(CONFIGS / 'dml_gsp_digits.py'), '--cfg-options', *opts]


# -- SIGKILL mid-epoch, resume, compare with the uninterrupted run ------------------------------


def _train_child(argv, kill_at):
    os.environ['KILL_AT_ITER'] = str(kill_at)
    train_cli.main(argv)


def run_training(args, work_dir, kill_at=0, resume=False):
    """Train in a forked child process (a real process, SIGKILLed by ``KillAtIterHook`` after
    iteration ``kill_at``); forking skips the ~15 s of imports a fresh interpreter pays.
    Returns the child's exit code (``-SIGKILL`` when killed)."""
    import multiprocessing

    # `args` ends with the --cfg-options list: the kill hook joins it.
    argv = [*args, 'default_hooks.kill.type=KillAtIterHook', '--work-dir', str(work_dir)]
    argv += ['--resume'] if resume else []
    child = multiprocessing.get_context('fork').Process(target=_train_child, args=(argv, kill_at))
    child.start()
    child.join(timeout=600)
    return child.exitcode


def final_metrics(work_dir) -> dict:
    """The last validation's metrics (LocalVisBackend's scalars.json of the latest run)."""
    lines = []
    for path in sorted(Path(work_dir).glob('*/vis_data/scalars.json')):
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    evaluated = [line for line in lines if any('/' in key for key in line)]
    return {k: v for k, v in evaluated[-1].items() if '/' in k}


def final_state(work_dir, epochs) -> dict:
    return safe_torch_load(Path(work_dir) / f'epoch_{epochs}.pth')['state_dict']


@pytest.mark.slow
@pytest.mark.parametrize('demo', ['vse', 'dml'])
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(demo, tiny_data, tmp_path):
    epochs, iters_per_epoch = 3, (7 if demo == 'vse' else 2)

    def args(workers):
        return vse_args(tiny_data, epochs, workers) if demo == 'vse' else dml_args(epochs, workers)

    # The uninterrupted reference runs in this process (the subprocesses cost ~15 s of imports
    # each on a loaded 2-core machine); it must not matter where a run happens.
    train_cli.main([*args(0), '--work-dir', str(tmp_path / 'full')])
    reference, reference_state = final_metrics(tmp_path / 'full'), final_state(tmp_path / 'full', 3)
    assert reference
    for workers in (0, 2):
        # A random iteration after the first epoch's checkpoint, not at an epoch's end.
        kill_at = random.choice(
            [i for i in range(iters_per_epoch + 1, epochs * iters_per_epoch) if i % iters_per_epoch]
        )
        work = tmp_path / f'killed_{workers}'
        assert run_training(args(workers), work, kill_at=kill_at) == -signal.SIGKILL, kill_at
        assert not (work / f'epoch_{epochs}.pth').exists()
        assert (work / '.train.lock').exists()  # the killed run's lock: stale, taken over
        (work / '.epoch_2.pth.k3j_x9ab.tmp').write_bytes(b'x' * 4096)  # a write cut by a kill
        assert run_training(args(workers), work, resume=True) == 0
        assert not list(work.glob('.*.tmp')) and not (work / '.train.lock').exists()
        metrics = final_metrics(work)
        assert metrics.keys() == reference.keys()
        for key, value in reference.items():
            assert metrics[key] == pytest.approx(value, abs=1e-4), (key, workers, kill_at)
        state = final_state(work, epochs)
        for key, value in reference_state.items():
            assert torch.allclose(state[key].float(), value.float(), atol=1e-4), (key, workers)


def test_sample_seed_depends_only_on_seed_epoch_and_index():
    import numpy as np

    seeder = SeedSample(seed=3)

    def draw(epoch, idx):
        seeder.epoch.fill_(epoch)
        seeder(dict(sample_idx=idx))
        return np.random.rand(), random.random(), torch.rand(()).item()

    first = draw(0, 5)
    np.random.rand(100)  # whatever was drawn in between
    assert draw(0, 5) == first
    assert draw(1, 5) != first and draw(0, 6) != first
    assert SeedSample(seed=4)(dict(sample_idx=5)) and np.random.rand() != first[0]
    with pytest.raises(KeyError, match='sample_idx'):
        seeder(dict(img=1))


def test_sample_seed_hook_seeds_wrapped_pipelines_once():
    from mmengine.dataset import Compose

    class Inner:
        def __init__(self):
            self.pipeline = Compose([])

    class Wrapper:
        datasets = [Inner(), Inner()]

    class Runner:
        seed, epoch = 7, 2
        train_loop = object.__new__(EpochBasedTrainLoop)
        train_dataloader = type('Loader', (), {'dataset': Wrapper()})()
        logger = MagicMock()

    hook = SampleSeedHook()
    hook.before_train(Runner)
    hook.before_train(Runner)  # a second call must not stack seeders
    for inner in Wrapper.datasets:
        assert len(inner.pipeline.transforms) == 1
        assert isinstance(inner.pipeline.transforms[0], SeedSample)
    hook.before_train_epoch(Runner)
    assert [int(s.epoch) for s in hook.seeders] == [2, 2]
    Runner.logger.warning.assert_not_called()

    # An iteration-based loop has no epoch to key draws by: warn, change nothing.
    Runner.train_loop = object.__new__(IterBasedTrainLoop)
    Runner.train_dataloader.dataset = Inner()
    hook = SampleSeedHook()
    hook.before_train(Runner)
    hook.before_train_epoch(Runner)
    assert not hook.seeders and not Runner.train_dataloader.dataset.pipeline.transforms
    assert 'epoch-based' in Runner.logger.warning.call_args[0][0]


# -- atomic checkpoints --------------------------------------------------------------------------


def test_interrupted_checkpoint_write_keeps_the_previous_one(tiny_data, tmp_path, monkeypatch):
    """A crash inside the write of epoch 2 (max_keep_ckpts=1): epoch 1 and its pointer survive,
    and nothing half-written carries a checkpoint's name."""
    work = tmp_path / 'work'
    replace = os.replace

    def dies_on_epoch_2(src, dst):
        if str(dst).endswith('epoch_2.pth'):
            raise KeyboardInterrupt('killed while writing epoch_2.pth')
        replace(src, dst)

    monkeypatch.setattr(atomic_checkpoint_hook.os, 'replace', dies_on_epoch_2)
    args = vse_args(tiny_data, epochs=2, extra=['default_hooks.checkpoint.max_keep_ckpts=1'])
    with pytest.raises(KeyboardInterrupt):
        train_cli.main([*args, '--work-dir', str(work)])
    assert (work / 'last_checkpoint').read_text() == str(work / 'epoch_1.pth')
    assert safe_torch_load(work / 'epoch_1.pth')['meta']['epoch'] == 1
    assert not (work / 'epoch_2.pth').exists()
    assert not list(work.glob('.*.tmp'))
    monkeypatch.setattr(atomic_checkpoint_hook.os, 'replace', replace)
    assert resolve_resume(work) == str(work / 'epoch_1.pth')
    train_cli.main([*args, '--work-dir', str(work), '--resume'])
    assert sorted(p.name for p in work.glob('epoch_*.pth')) == ['epoch_2.pth']  # epoch 1 gone
    assert len(list(work.glob('best_*.pth'))) == 1
    assert (work / 'last_checkpoint').read_text() == str(work / 'epoch_2.pth')


def test_interrupted_best_checkpoint_write_keeps_the_previous_best(
    tiny_data, tmp_path, monkeypatch
):
    """mmengine removes the previous best before writing the new one; here it survives."""
    work = tmp_path / 'work'
    replace = os.replace

    def dies_on_new_best(src, dst):
        if Path(dst).name == 'best_retrieval_rsum_epoch_2.pth':
            raise KeyboardInterrupt('killed while writing the best checkpoint')
        replace(src, dst)

    monkeypatch.setattr(atomic_checkpoint_hook.os, 'replace', dies_on_new_best)
    with pytest.raises(KeyboardInterrupt):
        train_cli.main([*vse_args(tiny_data, epochs=2), '--work-dir', str(work)])
    assert [p.name for p in work.glob('best_*.pth')] == ['best_retrieval_rsum_epoch_1.pth']
    assert safe_torch_load(work / 'best_retrieval_rsum_epoch_1.pth')['meta']['epoch'] == 1


def test_atomic_write_leaves_old_content_on_failure(tmp_path, monkeypatch):
    target = tmp_path / 'last_checkpoint'
    atomic_checkpoint_hook.atomic_write(target, b'old')

    def fail(src, dst):
        raise OSError('disk full')

    monkeypatch.setattr(atomic_checkpoint_hook.os, 'replace', fail)
    with pytest.raises(OSError, match='disk full'):
        atomic_checkpoint_hook.atomic_write(target, b'new')
    assert target.read_bytes() == b'old' and os.listdir(tmp_path) == ['last_checkpoint']


# -- --resume with broken checkpoints ------------------------------------------------------------


def _checkpoint(path, epoch):
    torch.save({'meta': {'epoch': epoch}, 'state_dict': {'w': torch.ones(2) * epoch}}, path)


def test_resume_falls_back_past_broken_checkpoints(tmp_path):
    _checkpoint(tmp_path / 'epoch_1.pth', 1)
    _checkpoint(tmp_path / 'epoch_2.pth', 2)
    data = (tmp_path / 'epoch_2.pth').read_bytes()
    (tmp_path / 'epoch_2.pth').write_bytes(data[: len(data) // 2])  # truncated
    (tmp_path / 'epoch_3.pth').write_bytes(b'')  # 0 bytes
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_4.pth'))  # dangling
    with pytest.warns(UserWarning) as caught:
        assert resolve_resume(tmp_path) == str(tmp_path / 'epoch_1.pth')
    message = str(caught[0].message)
    for name in ('epoch_4.pth', 'epoch_3.pth', 'epoch_2.pth', '0 bytes', 'truncated'):
        assert name in message
    (tmp_path / 'last_checkpoint').write_text('')  # empty pointer
    with pytest.warns(UserWarning, match='last_checkpoint is empty'):
        assert resolve_resume(tmp_path) == str(tmp_path / 'epoch_1.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_1.pth'))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert resolve_resume(tmp_path) == str(tmp_path / 'epoch_1.pth')


def test_resume_without_any_good_checkpoint_names_the_files(tmp_path):
    assert resolve_resume(tmp_path) is None  # nothing there: a fresh start
    (tmp_path / 'iter_5.pth').write_bytes(b'PK\x03\x04garbage')
    with pytest.raises(CheckpointError, match=r'no loadable checkpoint.*iter_5.pth'):
        resolve_resume(tmp_path)
    empty = tmp_path / 'given.pth'
    empty.write_bytes(b'')
    args = train_cli.train_parser().parse_args(
        [str(CONFIGS / 'vse_gpo_demo.py'), '--resume', str(empty)]
    )
    with pytest.raises(CheckpointError, match=r'given.pth is empty \(0 bytes\)'):
        train_cli.apply_train_args(runner_config.load_config(args), args)


def test_truncated_checkpoint_is_not_a_bare_eof_error(tmp_path):
    _checkpoint(tmp_path / 'x.pth', 1)
    data = (tmp_path / 'x.pth').read_bytes()
    for size in (1, 10, len(data) - 5):
        (tmp_path / 'x.pth').write_bytes(data[:size])
        with pytest.raises(CheckpointError, match=r'x.pth .*probably truncated'):
            safe_torch_load(tmp_path / 'x.pth')
        with pytest.raises(CheckpointError, match='x.pth'):  # mmengine's loader, ours now
            _load_checkpoint(str(tmp_path / 'x.pth'))


# -- safe and strict loading ---------------------------------------------------------------------


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_malicious_checkpoint_never_runs_code(tmp_path, monkeypatch):
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'payload': _RunsCode(marker)}, evil, pickle_module=pickle)
    monkeypatch.setenv(UNSAFE_ENV, '1')
    with pytest.raises(CheckpointError, match=r'weights_only=True\) refuses: .*GLOBAL pathlib'):
        safe_torch_load(evil)
    with pytest.raises(CheckpointError, match='evil.pth'):
        _load_checkpoint(str(evil))  # what Runner.resume and load_from call
    assert not marker.exists()
    for entry, argv in (
        (train_cli.main, [str(CONFIGS / 'vse_gpo_demo.py'), '--resume', str(evil)]),
        (test_cli.main, [str(CONFIGS / 'vse_gpo_demo.py'), str(evil)]),
    ):
        with pytest.raises(SystemExit, match=UNSAFE_ENV):
            entry(argv)
    assert not marker.exists()
    # The control: torch's own default with that variable set does run the payload.
    torch.load(evil)
    assert marker.exists()


def test_test_refuses_a_checkpoint_of_another_model(tiny_data, tmp_path):
    from gpo_plugin.models.necks import GPO

    other = tmp_path / 'other.pth'
    torch.save({'state_dict': {f'neck.{k}': v for k, v in GPO().state_dict().items()}}, other)
    args = vse_args(tiny_data, extra=['val_dataloader.num_workers=0'])
    argv = [args[0], str(other), *args[1:], '--work-dir', str(tmp_path / 'w')]
    with pytest.raises(CheckpointError) as error:
        test_cli.main(argv)
    message = str(error.value)
    assert 'missing keys' in message and 'img_enc.' in message
    assert 'unexpected keys' in message and 'neck.gru.' in message and '--non-strict' in message
    metrics = test_cli.main([*argv, '--non-strict'])  # asked for: runs with a random model
    assert 'retrieval/rsum' in metrics
