"""Crash-safe checkpointing: mmengine's ``CheckpointHook`` with atomic writes.

mmengine's hook deletes the oldest (or previous best) checkpoint *before* writing the new one
and writes files in place, so a kill in between leaves nothing to resume from, or a
``last_checkpoint`` naming a deleted or half-written file. This hook writes every file to a
temporary name in the same directory, flushes it to disk and renames it over the target
(``os.replace`` is atomic on POSIX), and removes old checkpoints only afterwards.
"""

from __future__ import annotations

import errno
import logging
import os
import os.path as osp
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from gpo_plugin.registry import HOOKS
from gpo_plugin.utils.work_dir_lock import live_holder

ATOMIC_BACKEND = 'gpo_atomic_local'


class DiskFullError(OSError):
    """No space left for a checkpoint (``errno`` ENOSPC), naming the file and the space it
    needs."""


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` holds either its old or its new content,
    whatever moment the process dies at."""
    atomic_stream(path, lambda f: f.write(data), size=len(data))


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` through :func:`atomic_stream` (no copy in memory)."""
    import torch

    atomic_stream(path, lambda f: torch.save(obj, f))


def atomic_stream(path: str | os.PathLike, write, size: int | None = None) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, flush it to disk and rename
    it over ``path``; the result has the permissions an ordinary ``open(path, 'wb')`` gives
    (0666 less the umask, not ``mkstemp``'s 0600). A full disk raises :class:`DiskFullError`
    naming ``path`` and the room needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        written = osp.getsize(tmp) if osp.exists(tmp) else 0
        if osp.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise _disk_full(path, size, written) from None
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _disk_full(path: Path, size: int | None, written: int) -> DiskFullError:
    free = shutil.disk_usage(path.parent).free
    old = path.stat().st_size if path.exists() else 0
    if size is not None:
        need = f'{_mib(size)} for the new file'
    else:
        need = f'at least {_mib(max(written, old))} for the new file ({_mib(written)} written)'
    keep = f', while the previous {_mib(old)} stays until the rename' if old else ''
    return DiskFullError(
        errno.ENOSPC,
        f'no space left on the device writing checkpoint {path}: an atomic save needs room '
        f'for two copies, {need}{keep}; {_mib(free)} free in {path.parent}. Free some space, '
        'lower max_keep_ckpts, or save to another --work-dir.',
    )


def _mib(size: int) -> str:
    return f'{size / 2**20:.1f} MiB'


# `.{name}.{8 random characters}.tmp`: what mkstemp above makes for a checkpoint or pointer.
_TEMPORARY = re.compile(r'^\.(?P<target>.+\.pth|last_checkpoint)\.[A-Za-z0-9_]{8}\.tmp$')


def remove_stale_temporaries(directory: str | os.PathLike) -> tuple[int, int]:
    """Delete the temporaries :func:`atomic_stream` left for checkpoints and pointers in
    ``directory`` when a run was killed mid-write. Call only when no other live run writes
    there. Returns (files removed, bytes freed)."""
    count = freed = 0
    directory = Path(directory)
    if not directory.is_dir():
        return count, freed
    for entry in directory.iterdir():
        if _TEMPORARY.match(entry.name) and entry.is_file():
            freed += entry.stat().st_size
            entry.unlink(missing_ok=True)
            count += 1
    return count, freed


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (where the OS allows opening directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@register_backend(ATOMIC_BACKEND)
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose ``put``/``put_text`` are :func:`atomic_write`."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(filepath, obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(filepath, obj.encode(encoding))


class _DeferredRemoval:
    """Proxy of a file backend that queues ``remove``/``rmtree`` until :meth:`flush`."""

    def __init__(self, backend) -> None:
        self._backend, self._queued = backend, []

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def remove(self, path) -> None:
        self._queued.append(('remove', path))

    def rmtree(self, path) -> None:
        self._queued.append(('rmtree', path))

    def discard(self) -> None:
        self._queued = []

    def flush(self, keep: set[str]) -> None:
        """Remove what was queued, except the paths in ``keep`` (just written again)."""
        queued, self._queued = self._queued, []
        for _, path in queued:
            if str(path) in keep:
                continue
            if self._backend.isfile(path):
                self._backend.remove(path)
            elif self._backend.isdir(path):  # checkpoints saved by DeepSpeed are folders
                self._backend.rmtree(path)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` (same arguments) whose checkpoints, best checkpoints and
    ``last_checkpoint`` pointer are written atomically, old files removed only after the new
    one is on disk. The default of ``configs/_base_/default_runtime.py``.

    With ``backend_args``/``file_client_args`` for a remote store it behaves exactly as
    mmengine's hook (atomic renames are a local-file guarantee).
    """

    def __init__(self, *args, backend_args: dict | None = None, **kwargs) -> None:
        self._atomic = backend_args is None and kwargs.get('file_client_args') is None
        if self._atomic:
            backend_args = dict(backend=ATOMIC_BACKEND)
        super().__init__(*args, backend_args=backend_args, **kwargs)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self._atomic:
            self.file_backend = _DeferredRemoval(self.file_backend)
            if is_main_process():
                self._remove_stale_temporaries(runner)

    def _remove_stale_temporaries(self, runner) -> None:
        """Temporaries of writes a killed run left; only when no other live run holds the
        work dir (its writes in flight look the same)."""
        holder = live_holder(runner.work_dir)
        if holder is not None:
            print_log(
                f'AtomicCheckpointHook: {holder} holds {runner.work_dir}; leaving temporary '
                'files alone.',
                logger='current',
                level=logging.WARNING,
            )
            return
        folders = {osp.abspath(str(self.out_dir)), osp.abspath(runner.work_dir)}
        count = freed = 0
        for folder in folders:
            removed = remove_stale_temporaries(folder)
            count, freed = count + removed[0], freed + removed[1]
        if count:
            print_log(
                f'AtomicCheckpointHook: removed {count} temporary file(s) ({_mib(freed)}) left '
                'by interrupted checkpoint writes.',
                logger='current',
                level=logging.WARNING,
            )

    @contextmanager
    def _removals_after_writes(self):
        deferred = isinstance(self.file_backend, _DeferredRemoval)
        try:
            yield
        except BaseException:
            if deferred:  # the new file may not exist: keep every old one
                self.file_backend.discard()
            raise
        if deferred and is_main_process():
            self.file_backend.flush(keep=self._current_files())

    def _current_files(self) -> set[str]:
        current = {self.last_ckpt, getattr(self, 'best_ckpt_path', None)}
        current.update((getattr(self, 'best_ckpt_path_dict', None) or {}).values())
        return {str(path) for path in current if path is not None}

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        """mmengine's bookkeeping (``keep_ckpt_ids``, ``last_ckpt`` in the message hub, so a
        resumed run knows what to delete), in crash-safe order: write the checkpoint, then the
        pointer, then remove the checkpoint that fell out of ``max_keep_ckpts``."""
        if not self._atomic:
            return super()._save_checkpoint_with_step(runner, step, meta)
        with self._removals_after_writes():
            new_step = not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step)
            if self.max_keep_ckpts > 0 and new_step:
                if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                    old = self.keep_ckpt_ids.popleft()
                    old_path = self.file_backend.join_path(
                        self.out_dir, self.filename_tmpl.format(old)
                    )
                    self.file_backend.remove(old_path)  # queued until the new file is written
                self.keep_ckpt_ids.append(step)
                runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
            filename = self.filename_tmpl.format(step)
            self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
            runner.message_hub.update_info('last_ckpt', self.last_ckpt)
            runner.save_checkpoint(
                self.out_dir,
                filename,
                self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=self.by_epoch,
                backend_args=self.backend_args,
                **self.args,
            )
            if is_main_process():
                pointer = osp.join(runner.work_dir, 'last_checkpoint')
                atomic_write(pointer, str(self.last_ckpt).encode())

    def _save_best_checkpoint(self, runner, metrics) -> None:
        with self._removals_after_writes():
            super()._save_best_checkpoint(runner, metrics)
