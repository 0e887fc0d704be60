"""One training per work dir: a lock file that a killed run cannot leave stuck.

``{work_dir}/.train.lock`` holds the pid, host, start time and command of the run that owns
the work dir, and that run keeps an exclusive ``flock`` on it for its lifetime. The kernel drops
the ``flock`` when the process dies, however it dies (``kill -9`` included), so a lock file left
by a dead run is stale: the next run takes it over and says whose it was. A second run while
the first is alive is refused with :class:`WorkDirLockedError` naming the holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import os.path as osp
import socket
import sys
import time
from dataclasses import asdict, dataclass

LOCK_NAME = '.train.lock'
_HELD: dict[str, WorkDirLock] = {}  # lock path -> the lock this process holds there


class WorkDirLockedError(RuntimeError):
    """Another live training holds the work dir's lock."""


@dataclass
class Holder:
    """Who holds (or last held) a work dir's lock."""

    pid: int
    host: str
    started: str
    command: str

    def __str__(self) -> str:
        return f'pid {self.pid} on {self.host} (started {self.started}: {self.command})'


def lock_path(work_dir: str | os.PathLike) -> str:
    return osp.join(osp.abspath(work_dir), LOCK_NAME)


def _read_holder(fd: int) -> Holder | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 65536)
    try:
        return Holder(**json.loads(raw))
    except (ValueError, TypeError):
        return None


def live_holder(work_dir: str | os.PathLike) -> Holder | None:
    """The live process of another run holding ``work_dir``'s lock, or None (no lock file, a
    stale one, or this process holds it)."""
    path = lock_path(work_dir)
    if path in _HELD:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_holder(fd) or Holder(-1, '?', '?', 'unknown')
    else:
        return None
    finally:
        os.close(fd)  # also releases the probe's shared lock


class WorkDirLock:
    """Context manager owning ``work_dir`` for one training (no-op when ``enabled`` is False,
    e.g. on ranks other than 0 of a distributed run).

    Attributes:
        stale: the holder of a lock left by a dead run that was taken over, or None.
    """

    def __init__(self, work_dir: str | os.PathLike, enabled: bool = True) -> None:
        self.work_dir = str(work_dir)
        self.path = lock_path(work_dir)
        self.enabled = enabled
        self.stale: Holder | None = None
        self._fd: int | None = None

    def acquire(self) -> WorkDirLock:
        if not self.enabled:
            return self
        os.makedirs(osp.dirname(self.path), exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise WorkDirLockedError(
                    f'work dir {self.work_dir} is in use by another training: '
                    f'{holder or "a process that has not written its name yet"} holds '
                    f'{self.path}. Wait for it to finish, or train into another --work-dir.'
                ) from None
            try:  # the file we locked may have been released and unlinked meanwhile
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        previous = _read_holder(fd)
        if previous is not None and previous.pid != os.getpid():
            self.stale = previous
        me = Holder(
            os.getpid(),
            socket.gethostname(),
            time.strftime('%Y-%m-%d %H:%M:%S'),
            ' '.join(sys.argv)[:500],
        )
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(asdict(me)).encode())
        os.fsync(fd)
        self._fd = fd
        _HELD[self.path] = self
        return self

    def stale_message(self) -> str | None:
        if self.stale is None:
            return None
        return (
            f'{self.path}: the run that held this work dir, {self.stale}, is not running any '
            'more (killed?); its stale lock was taken over.'
        )

    def release(self) -> None:
        if self._fd is None:
            return
        _HELD.pop(self.path, None)
        try:
            os.unlink(self.path)  # while still locked: nobody can take a half-released lock
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> WorkDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_rank_zero() -> bool:
    """Rank 0 (or not distributed), from the launcher's environment: the process that locks."""
    return int(os.environ.get('RANK', '0')) == 0
