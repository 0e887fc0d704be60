"""Losing work (docs/fault_tolerance.md): one training per work dir (a lock a killed run does not
leave stuck), stale temporaries of interrupted checkpoint writes removed, checkpoints with the
mode an ordinary write gives, a full disk named with the file and the room needed."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from gpo_plugin.cli import train as train_cli
from gpo_plugin.engine import atomic_checkpoint_hook as ach
from gpo_plugin.utils.work_dir_lock import LOCK_NAME, WorkDirLock, WorkDirLockedError, live_holder

ROOT = Path(__file__).resolve().parents[2]
LOCK_MODULE = ROOT / 'gpo_plugin' / 'utils' / 'work_dir_lock.py'
_HOLDER = textwrap.dedent(
    """
    import importlib.util, os, signal, sys
    # The lock module alone (it needs nothing else): no 10 s of package imports.
    spec = importlib.util.spec_from_file_location('work_dir_lock', sys.argv[3])
    module = sys.modules['work_dir_lock'] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lock = module.WorkDirLock(sys.argv[1]).acquire()
    print('locked', flush=True)
    if sys.argv[2] == 'die':
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.readline()  # hold until the test closes stdin
    lock.release()
    """
)


@pytest.fixture
def holder(tmp_path):
    """Start a process that locks a work dir: ``holder(work_dir, 'hold'|'die')``."""
    started = []

    def start(work_dir, mode='hold'):
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        child = subprocess.Popen(
            [sys.executable, '-c', _HOLDER, str(work_dir), mode, str(LOCK_MODULE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        started.append(child)
        assert child.stdout.readline().strip() == 'locked'
        if mode == 'die':
            assert child.wait(timeout=60) == -signal.SIGKILL
        return child

    yield start
    for child in started:
        if child.poll() is None:
            child.stdin.close()
            child.wait(timeout=60)


def test_second_training_in_a_work_dir_is_refused(tmp_path, holder):
    work_dir = tmp_path / 'work'
    first = holder(work_dir)
    config = str(ROOT / 'configs' / 'dml_gsp_digits.py')
    with pytest.raises(WorkDirLockedError, match=rf'pid {first.pid} on .* holds .*{LOCK_NAME}'):
        train_cli.main([config, '--work-dir', str(work_dir)])
    sys.path.insert(0, str(ROOT / 'tools'))
    try:
        import train_pml
    finally:
        sys.path.pop(0)
    argv = ['train_pml.py', str(ROOT / 'configs' / 'pml' / 'digits_gsp.py')]
    with pytest.raises(WorkDirLockedError, match=f'pid {first.pid}'):
        train_pml.main([*argv[1:], '--work-dir', str(work_dir)])
    assert live_holder(work_dir).pid == first.pid
    first.stdin.close()
    first.wait(timeout=60)
    assert live_holder(work_dir) is None
    assert not (work_dir / LOCK_NAME).exists()  # released cleanly: the file is gone


def test_lock_of_a_killed_run_is_taken_over(tmp_path, holder):
    work_dir = tmp_path / 'work'
    dead = holder(work_dir, 'die')
    left = json.loads((work_dir / LOCK_NAME).read_text())
    assert left['pid'] == dead.pid  # the killed run left its lock file behind
    assert live_holder(work_dir) is None
    with WorkDirLock(work_dir) as lock:
        assert lock.stale.pid == dead.pid
        assert f'pid {dead.pid}' in lock.stale_message() and 'taken over' in lock.stale_message()
        assert json.loads((work_dir / LOCK_NAME).read_text())['pid'] == os.getpid()
        with pytest.raises(WorkDirLockedError):  # a second acquisition, even in-process
            WorkDirLock(work_dir).acquire()


def _fake_runner(work_dir):
    hook = ach.AtomicCheckpointHook(interval=1)
    hook.out_dir = str(work_dir)
    return hook, SimpleNamespace(work_dir=str(work_dir))


def test_stale_temporaries_are_removed_only_when_nobody_writes(tmp_path, holder):
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    ours = [
        '.iter_12.pth.k3j_x9ab.tmp',
        '.epoch_3.pth.00000000.tmp',
        '.last_checkpoint.abcdefgh.tmp',
    ]
    others = ['.notes.tmp', 'iter_12.pth', '.iter_12.pth.tmp', 'data.k3j_x9ab.tmp']
    for name in ours + others:
        (work_dir / name).write_bytes(b'x' * 1000)
    hook, runner = _fake_runner(work_dir)
    live = holder(work_dir)  # another run is writing: its temporaries are not stale
    hook._remove_stale_temporaries(runner)
    assert all((work_dir / name).exists() for name in ours + others)
    live.stdin.close()
    live.wait(timeout=60)
    hook._remove_stale_temporaries(runner)
    assert not any((work_dir / name).exists() for name in ours)
    assert all((work_dir / name).exists() for name in others)


@pytest.mark.parametrize('umask', [0o022, 0o077, 0o002])
def test_checkpoints_get_the_mode_of_an_ordinary_write(tmp_path, umask):
    old = os.umask(umask)
    try:
        (tmp_path / 'plain').write_bytes(b'x')
        ach.atomic_write(tmp_path / 'atomic.pth', b'x')
        ach.atomic_torch_save({'w': torch.ones(2)}, tmp_path / 'saved.pth')
    finally:
        os.umask(old)
    expected = (tmp_path / 'plain').stat().st_mode & 0o777
    assert expected == 0o666 & ~umask
    assert (tmp_path / 'atomic.pth').stat().st_mode & 0o777 == expected
    assert (tmp_path / 'saved.pth').stat().st_mode & 0o777 == expected


def test_disk_full_names_the_file_and_the_room_needed(tmp_path, monkeypatch):
    target = tmp_path / 'epoch_2.pth'
    target.write_bytes(b'o' * 3 * 2**20)  # the previous checkpoint: stays until the rename

    def no_space(fd):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(ach.os, 'fsync', no_space)
    with pytest.raises(ach.DiskFullError) as error:
        ach.AtomicLocalBackend().put(b'n' * 2**20, str(target))
    message = str(error.value)
    assert error.value.errno == errno.ENOSPC and str(target) in message
    assert 'two copies' in message and '1.0 MiB for the new file' in message
    assert 'previous 3.0 MiB' in message and 'free in' in message
    assert error.value.__cause__ is None and error.value.__suppress_context__
    assert target.read_bytes() == b'o' * 3 * 2**20
    assert [p.name for p in tmp_path.iterdir()] == ['epoch_2.pth']  # no temporary left
    with pytest.raises(ach.DiskFullError, match=r'epoch_2.pth.*at least 3.0 MiB'):
        ach.atomic_torch_save({'w': torch.ones(10)}, target)
