"""Safe, checked checkpoint loading and what ``--resume`` resolves to (docs/fault_tolerance.md).

- :func:`safe_torch_load` is ``torch.load(weights_only=True)`` with a readable error for a
  0-byte, truncated or foreign file (never torch's bare ``EOFError``).
- :func:`safe_torch_load` is also the one place that says what a refused file is (unsafe
  pickle, 0-byte, truncated zip, a text file, a NumPy array, ...).
- :func:`install_safe_mmengine_loader` makes every scheme of mmengine's ``CheckpointLoader``
  (local, http(s) and the torch hub cache, torchvision://, open-mmlab://, mmcls://, pavi://,
  s3/petrel) load through it, so neither a remote file nor
  ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` can turn unpickling of arbitrary code back on.
- :func:`resolve_resume` finds the newest loadable checkpoint of a work dir.
- :func:`check_state_dict_matches` compares a checkpoint's keys and shapes with a model.
"""

from __future__ import annotations

import io
import os
import os.path as osp
import pickle
import re
import tempfile
import warnings
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import mmengine.runner.checkpoint as mm_checkpoint
import mmengine.utils.dl_utils.hub as mm_hub
import torch
from mmengine.dist import get_dist_info
from mmengine.fileio import get_file_backend
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import CheckpointLoader

UNSAFE_ENV = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'
_CHECKPOINT_NAME = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: missing, empty, truncated or unsafe."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """A checkpoint holding objects safe loading refuses (also an ``UnpicklingError``, what
    ``torch.load(weights_only=True)`` raises for it)."""


def unsafe_load_requested() -> bool:
    """Whether the environment asks torch to unpickle arbitrary objects by default."""
    return os.environ.get(UNSAFE_ENV, '0').lower() in ('1', 'y', 'yes', 'true')


def refuse_unsafe_env(tool: str) -> None:
    """Stop a command-line tool when ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is set."""
    if unsafe_load_requested():
        raise SystemExit(
            f'{tool}: {UNSAFE_ENV} is set, which makes torch.load run arbitrary code from '
            'checkpoint files that do not pass weights_only=True. gpo_plugin always loads '
            f'with weights_only=True; unset {UNSAFE_ENV} (`unset {UNSAFE_ENV}`) and run again.'
        )


def safe_torch_load(
    source, map_location=None, mmap: bool = False, name: str | None = None, extra_globals=()
):
    """``torch.load(source, weights_only=True)`` (``source``: a path, bytes or a binary file
    object); anything that is not a checkpoint of plain tensors and containers raises
    :class:`CheckpointError` (:class:`UnsafeCheckpointError` for refused objects) naming the
    file (``name`` for in-memory data) and saying what it is instead. ``extra_globals``:
    classes allowed for this load only (e.g. ``argparse.Namespace`` of a published file)."""
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    elif not isinstance(source, (str, os.PathLike)):  # a file object: read it into memory
        source = io.BytesIO(source.read())
    if isinstance(source, io.BytesIO):
        where, size = name or '<in-memory checkpoint>', len(source.getbuffer())
        head = source.getvalue()[:_HEAD]
    else:
        where = osp.expanduser(str(source))
        if not osp.isfile(where):
            raise CheckpointError(f'checkpoint {where} not found.')
        size = osp.getsize(where)
        with open(where, 'rb') as f:
            head = f.read(_HEAD)
        source = where
    if size == 0:
        raise CheckpointError(
            f'checkpoint {where} is empty (0 bytes): a write that was interrupted, or a file '
            'created but never written.'
        )
    looks_like = _foreign_format(head)
    if looks_like is None and (head.startswith(_ZIP_MAGIC) or _ZIP_MAGIC.startswith(head)):
        looks_like = _broken_zip(source)
    if looks_like is not None:
        raise CheckpointError(f'checkpoint {where} ({size} bytes) is {looks_like}.')
    try:
        with torch.serialization.safe_globals(list(extra_globals)):
            return torch.load(source, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        refused, reason = _unpickler_reason(str(error))
        if refused:
            raise UnsafeCheckpointError(
                f'checkpoint {where} holds objects that safe loading (weights_only=True) '
                f'refuses: {reason}; unpickling them could run code. Only load checkpoints '
                'you trust; if it is yours, re-save its state dicts as plain tensors and '
                'containers.'
            ) from None
        raise CheckpointError(
            f'checkpoint {where} ({size} bytes) cannot be read: {reason}'
        ) from None
    except EOFError:
        raise CheckpointError(
            f'checkpoint {where} ({size} bytes) ends early: a legacy (pickle-format) torch '
            'file cut short.'
        ) from None
    except (RuntimeError, ValueError, OSError) as error:
        raise CheckpointError(
            f'checkpoint {where} ({size} bytes) cannot be read: {type(error).__name__}: '
            f'{str(error).splitlines()[0]}'
        ) from None


_HEAD = 512
_ZIP_MAGIC = b'PK\x03\x04'


def _foreign_format(head: bytes) -> str | None:
    """What a file looks like from its first bytes, when that is plainly not a torch
    checkpoint (zip format since torch 1.6, pickle format before); None otherwise."""
    if head.startswith(b'\x93NUMPY'):
        return 'a NumPy array (.npy, written by numpy.save), not a torch checkpoint'
    if head.startswith((_ZIP_MAGIC, b'\x80')) or _ZIP_MAGIC.startswith(head):
        return None
    text = _as_text(head)
    if text is not None:
        lowered = text.lstrip().lower()
        if lowered.startswith(('<!doctype html', '<html')):
            return 'an HTML page, not a torch checkpoint (a download that got an error page?)'
        return f'a text file, not a torch checkpoint (it starts with {text[:60]!r})'
    return f'not a torch checkpoint (it starts with the bytes {head[:8].hex(" ")})'


def _as_text(head: bytes) -> str | None:
    """``head`` decoded as UTF-8 if it is printable text (a cut multi-byte character at the
    end allowed), else None."""
    for cut in range(4):
        try:
            text = head[: len(head) - cut].decode('utf-8')
        except UnicodeDecodeError:
            continue
        return text if all(c.isprintable() or c in '\n\r\t' for c in text) else None
    return None


def _broken_zip(source) -> str | None:
    """For a file starting like a zip archive: why torch cannot use it, or None."""
    if not zipfile.is_zipfile(source):
        return (
            'a torch zip checkpoint without its end-of-archive record: probably truncated by '
            'an interrupted write or download'
        )
    with zipfile.ZipFile(source) as archive:
        names = archive.namelist()
    if isinstance(source, io.BytesIO):
        source.seek(0)
    if any(n.endswith('/data.pkl') or n == 'data.pkl' for n in names):
        return None
    if names and all(n.endswith('.npy') for n in names):
        return 'a NumPy archive (.npz, written by numpy.savez), not a torch checkpoint'
    return f'a zip archive but not a torch checkpoint (no data.pkl among {names[:3]})'


def _unpickler_reason(message: str) -> tuple[bool, str]:
    """(whether safe loading refused a global, the line of torch's long message that says
    what went wrong, without torch's advice to turn safe loading off)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        # "Unsupported global: GLOBAL x.y ...", "... GLOBAL posix.system", or our getattr guard
        if 'GLOBAL' in line or 'asks for getattr' in line:
            reason = line.split('WeightsUnpickler error:')[-1].split(' Please use')[0]
            return True, reason.split(' was not an allowed global')[0].strip()
    for i, line in enumerate(lines):
        if 'WeightsUnpickler error:' in line:
            rest = line.split('WeightsUnpickler error:', 1)[1].strip()
            return False, rest or (lines[i + 1] if i + 1 < len(lines) else line)
    return False, lines[0] if lines else 'unknown error'


# -- every scheme of mmengine's CheckpointLoader, loaded with safe_torch_load ------------------


def hub_checkpoint_path(url: str, model_dir: str | None = None, file_name: str | None = None):
    """Where ``torch.hub.load_state_dict_from_url`` caches ``url`` (``$TORCH_HOME/hub/
    checkpoints`` by default)."""
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    return osp.join(model_dir, file_name or osp.basename(urlparse(url).path))


def safe_load_state_dict_from_url(
    url: str,
    model_dir: str | None = None,
    map_location=None,
    progress: bool = True,
    check_hash: bool = False,
    file_name: str | None = None,
    weights_only: bool = True,
):
    """``torch.hub.load_state_dict_from_url`` (same cache, same download) whose file, freshly
    downloaded or already cached, goes through :func:`safe_torch_load`; ``weights_only`` is
    accepted for compatibility and ignored (always safe)."""
    cached = hub_checkpoint_path(url, model_dir, file_name)
    if not osp.isfile(cached):
        os.makedirs(osp.dirname(cached), exist_ok=True)
        digest = None
        if check_hash:
            match = torch.hub.HASH_REGEX.search(osp.basename(cached))
            digest = match.group(1) if match else None
        torch.hub.download_url_to_file(url, cached, digest, progress=progress)
    return safe_torch_load(cached, map_location=map_location, name=f'{cached} (from {url})')


def _load_from_local_safely(filename: str, map_location=None):
    return safe_torch_load(filename, map_location=map_location)


def _load_from_http_safely(filename: str, map_location=None, model_dir=None, progress=False):
    """mmengine's http(s) loader: local rank 0 downloads first, the others read its cache."""
    rank, world_size = get_dist_info()
    checkpoint = None
    if rank == 0:
        checkpoint = safe_load_state_dict_from_url(filename, model_dir, map_location, progress)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = safe_load_state_dict_from_url(filename, model_dir, map_location, progress)
    return checkpoint


def _load_from_torchvision_safely(filename: str, map_location=None):
    name = filename.split('://', 1)[1]
    return _load_from_http_safely(mm_checkpoint.get_torchvision_models()[name], map_location)


def _load_from_openmmlab_safely(filename: str, map_location=None):
    name = filename.split('://', 1)[1]
    name = mm_checkpoint.get_deprecated_model_names().get(name, name)
    url = mm_checkpoint.get_external_models()[name]
    if url.startswith(('http://', 'https://')):
        return _load_from_http_safely(url, map_location)
    return safe_torch_load(osp.join(mm_checkpoint._get_mmengine_home(), url), map_location)


def _load_from_mmcls_safely(filename: str, map_location=None):
    url = mm_checkpoint.get_mmcls_models()[filename[len('mmcls://') :]]
    checkpoint = _load_from_http_safely(url, map_location)
    return mm_checkpoint._process_mmcls_checkpoint(checkpoint)


def _load_from_pavi_safely(filename: str, map_location=None):
    from pavi import modelcloud  # ImportError as mmengine's: pavi is optional

    model = modelcloud.get(filename[len('pavi://') :])
    with tempfile.TemporaryDirectory() as tmp:
        downloaded = osp.join(tmp, model.name)
        model.download(downloaded)
        return safe_torch_load(downloaded, map_location, name=f'{filename} ({model.name})')


def _load_from_ceph_safely(filename: str, map_location=None, backend: str = 'petrel'):
    data = get_file_backend(filename, backend_args={'backend': backend}).get(filename)
    return safe_torch_load(data, map_location, name=filename)


SAFE_SCHEMES = {
    '': _load_from_local_safely,
    ('http://', 'https://'): _load_from_http_safely,
    ('modelzoo://', 'torchvision://'): _load_from_torchvision_safely,
    ('open-mmlab://', 'openmmlab://'): _load_from_openmmlab_safely,
    'mmcls://': _load_from_mmcls_safely,
    'pavi://': _load_from_pavi_safely,
    (r'(\S+\:)?s3://', r'(\S+\:)?petrel://'): _load_from_ceph_safely,
}


def install_safe_mmengine_loader() -> None:
    """Replace every loader of mmengine's ``CheckpointLoader`` (used by ``resume``,
    ``load_from``, ``init_cfg=dict(type='Pretrained')`` and ``load_checkpoint``) with one that
    reads through :func:`safe_torch_load`, and mmengine's copies of torch's hub loader with
    :func:`safe_load_state_dict_from_url`: ``weights_only=True`` whatever the scheme, whatever
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says, for files already in the hub cache too."""
    for prefixes, loader in SAFE_SCHEMES.items():
        CheckpointLoader.register_scheme(prefixes=prefixes, loader=loader, force=True)
    mm_checkpoint.load_url = safe_load_state_dict_from_url
    mm_checkpoint.load_from_local = _load_from_local_safely  # for callers of these by name
    mm_checkpoint.load_from_http = _load_from_http_safely
    mm_hub.load_url = safe_load_state_dict_from_url


def is_loadable(path: str | os.PathLike) -> str | None:
    """``None`` if ``path`` loads safely (memory-mapped, cheap), else why not."""
    try:
        safe_torch_load(path, map_location='cpu', mmap=True)
    except CheckpointError as error:
        return str(error)
    return None


def numbered_checkpoints(work_dir: str | os.PathLike) -> list[Path]:
    """``epoch_*.pth`` and ``iter_*.pth`` of ``work_dir``, newest (largest number) first."""
    found = []
    for path in Path(work_dir).glob('*.pth'):
        match = _CHECKPOINT_NAME.match(path.name)
        if match:
            found.append((int(match.group(2)), path.stat().st_mtime, path))
    return [path for *_, path in sorted(found, key=lambda t: (t[0], t[1]), reverse=True)]


def resolve_resume(work_dir: str | os.PathLike) -> str | None:
    """The checkpoint ``--resume`` (without a path) should continue from.

    ``last_checkpoint`` if it names a loadable file; otherwise the newest loadable
    ``epoch_*``/``iter_*`` checkpoint of ``work_dir``, with a warning naming every file
    skipped and why. ``None`` when the work dir holds no checkpoint at all (a fresh start);
    :class:`CheckpointError` when it holds checkpoints but none is loadable.
    """
    skipped = []
    pointer = Path(work_dir) / 'last_checkpoint'
    if pointer.is_file():
        target = pointer.read_text().strip()
        if not target:
            skipped.append(f'{pointer} is empty')
        else:
            problem = is_loadable(target)
            if problem is None:
                return target
            skipped.append(f'{pointer} -> {problem}')
    for path in numbered_checkpoints(work_dir):
        problem = is_loadable(path)
        if problem is None:
            if skipped:
                warnings.warn(
                    f'--resume: resuming from {path}; skipped: ' + '; '.join(skipped),
                    stacklevel=2,
                )
            return str(path)
        skipped.append(problem)
    if skipped:
        raise CheckpointError(
            f'--resume: no loadable checkpoint in {work_dir}: ' + '; '.join(skipped) + '. '
            'Pass --resume PATH to a good checkpoint, or drop --resume to start afresh.'
        )
    return None


def check_state_dict_matches(model: torch.nn.Module, path: str, shown: int = 5) -> None:
    """Raise :class:`CheckpointError` unless the checkpoint's ``state_dict`` has exactly the
    model's keys and shapes (a few differences are named)."""
    checkpoint = safe_torch_load(path, map_location='cpu', mmap=True)
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f'checkpoint {path} holds no state_dict.')
    state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    # Under a launcher the Runner's model is wrapped (DDP): compare with the model inside,
    # whose keys are the ones checkpoints hold.
    expected = (model.module if is_model_wrapper(model) else model).state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f'{k} {tuple(state[k].shape)} vs {tuple(v.shape)}'
        for k, v in expected.items()
        if k in state and hasattr(state[k], 'shape') and state[k].shape != v.shape
    ]
    problems = [
        f'{len(items)} {what}: {", ".join(items[:shown])}{", ..." if len(items) > shown else ""}'
        for what, items in (
            ('missing keys', missing),
            ('unexpected keys', unexpected),
            ('shape mismatches (checkpoint vs model)', mismatched),
        )
        if items
    ]
    if problems:
        raise CheckpointError(
            f'checkpoint {path} does not match the model of the config: '
            + '; '.join(problems)
            + '. Check that config and checkpoint belong together, or pass --non-strict to '
            'load what matches anyway.'
        )
