"""Crash-safe checkpointing: mmengine's ``CheckpointHook`` with atomic writes.

mmengine's hook deletes the oldest (or previous best) checkpoint *before* writing the new one
and writes files in place, so a kill in between leaves nothing to resume from, or a
``last_checkpoint`` naming a deleted or half-written file. This hook writes every file to a
temporary name in the same directory, flushes it to disk and renames it over the target
(``os.replace`` is atomic on POSIX), and removes old checkpoints only afterwards.
"""

from __future__ import annotations

import os
import os.path as osp
import tempfile
from contextlib import contextmanager
from pathlib import Path

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook

from gpo_plugin.registry import HOOKS

ATOMIC_BACKEND = 'gpo_atomic_local'


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` holds either its old or its new content,
    whatever moment the process dies at."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(handle, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


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
