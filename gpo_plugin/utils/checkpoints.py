"""Safe, checked checkpoint loading and what ``--resume`` resolves to (docs/fault_tolerance.md).

- :func:`safe_torch_load` is ``torch.load(weights_only=True)`` with a readable error for a
  0-byte, truncated or foreign file (never torch's bare ``EOFError``).
- :func:`install_safe_mmengine_loader` makes mmengine's local-file checkpoint loader (used by
  ``resume``, ``load_from`` and ``load_checkpoint``) pass ``weights_only=True`` explicitly, so
  ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` cannot turn unpickling of arbitrary code back on.
- :func:`resolve_resume` finds the newest loadable checkpoint of a work dir.
- :func:`check_state_dict_matches` compares a checkpoint's keys and shapes with a model.
"""

from __future__ import annotations

import os
import os.path as osp
import pickle
import re
import warnings
from pathlib import Path

import torch
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


def safe_torch_load(path: str | os.PathLike, map_location=None, mmap: bool = False):
    """``torch.load(path, weights_only=True)``; a file that cannot be read raises
    :class:`CheckpointError` naming it and what is wrong."""
    path = osp.expanduser(str(path))
    if not osp.isfile(path):
        raise CheckpointError(f'checkpoint {path} not found.')
    size = osp.getsize(path)
    if size == 0:
        raise CheckpointError(f'checkpoint {path} is empty (0 bytes): an interrupted write.')
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except torch.serialization.pickle.UnpicklingError as error:
        refused, reason = _unpickler_reason(str(error))
        if refused:
            raise UnsafeCheckpointError(
                f'checkpoint {path} holds objects that safe loading (weights_only=True) '
                f'refuses: {reason}. Only load checkpoints you trust; re-save it with plain '
                'tensors and containers if it is yours.'
            ) from None
        raise CheckpointError(
            f'checkpoint {path} ({size} bytes) cannot be read, probably truncated or not a '
            f'checkpoint: {reason}'
        ) from None
    except (EOFError, RuntimeError, ValueError, OSError) as error:
        raise CheckpointError(
            f'checkpoint {path} ({size} bytes) cannot be read, probably truncated by an '
            f'interrupted write: {type(error).__name__}: {str(error).splitlines()[0]}'
        ) from None


def _unpickler_reason(message: str) -> tuple[bool, str]:
    """(whether safe loading refused a global, the line of torch's long message that says
    what went wrong)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if 'GLOBAL' in line:  # "Unsupported global: GLOBAL x.y ..." or "... GLOBAL posix.system"
            return True, line.split('WeightsUnpickler error:')[-1].split(' Please use')[0].strip()
    for i, line in enumerate(lines):
        if 'WeightsUnpickler error:' in line:
            rest = line.split('WeightsUnpickler error:', 1)[1].strip()
            return False, rest or (lines[i + 1] if i + 1 < len(lines) else line)
    return False, lines[0] if lines else 'unknown error'


def _load_from_local_safely(filename: str, map_location=None):
    return safe_torch_load(filename, map_location=map_location)


def install_safe_mmengine_loader() -> None:
    """Register :func:`safe_torch_load` as mmengine's loader of local files (the scheme
    mmengine's ``CheckpointLoader`` uses for paths without a URL prefix)."""
    CheckpointLoader.register_scheme(prefixes='', loader=_load_from_local_safely, force=True)


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
    expected = model.state_dict()
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
