"""Crash-safe, resumable PML training (docs/fault_tolerance.md).

- :func:`install_safe_pml_io` makes PML's own model files safe: ``common_functions.load_model``
  (behind ``HookContainer.load_latest_saved_models``, best models included) reads through
  :func:`~gpo_plugin.utils.checkpoints.safe_torch_load` (``weights_only=True``, a refused or
  missing file is an error naming it, never PML's "Could not LOAD" and a fresh model), and
  ``save_model`` writes atomically (temporary file, fsync, rename).
- :class:`TrainingStateHook` (an ``end_of_epoch_hook``) writes, every epoch whatever the test
  interval, one file ``training_state_epoch_{e}.pth`` holding everything a resumed run needs to
  repeat the uninterrupted one bit for bit: models, optimizers, schedulers, loss and miner
  parameters, the sampler's epoch counter and the python/numpy/torch random states.
- :func:`resume_training` loads the newest complete state (skipping broken ones, saying so).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import torch
from pytorch_metric_learning.utils import common_functions as c_f

from gpo_plugin.engine.atomic_checkpoint_hook import atomic_torch_save, remove_stale_temporaries
from gpo_plugin.utils.checkpoints import CheckpointError, safe_torch_load

STATE_NAME = 'training_state_epoch_{}.pth'
_STATE = re.compile(r'^training_state_epoch_(\d+)\.pth$')
# What PML's HookContainer saves of a trainer; the same parts go into a training state.
PARTS = ('models', 'optimizers', 'lr_schedulers', 'loss_funcs', 'mining_funcs')
LOGGER = c_f.LOGGER


# -- PML's own model files ---------------------------------------------------------------------


def safe_load_model(model_def, model_filename: str, device) -> None:
    """``common_functions.load_model`` with ``weights_only=True`` and named errors."""
    state = safe_torch_load(model_filename, map_location=device)
    if not isinstance(state, dict):
        raise CheckpointError(f'{model_filename} holds {type(state).__name__}, not a state dict.')
    if state and all(key.startswith('module.') for key in state):  # saved from DataParallel
        state = {key[len('module.') :]: value for key, value in state.items()}
    model_def.load_state_dict(state)


def atomic_save_model(model, filepath: str) -> None:
    """``common_functions.save_model`` through a temporary file, fsync and rename."""
    model = getattr(model, 'module', model)
    atomic_torch_save(model.state_dict(), filepath)


def install_safe_pml_io() -> None:
    """Route PML's model loading and saving through :func:`safe_load_model` and
    :func:`atomic_save_model` (PML looks both up in its module at call time)."""
    c_f.load_model = safe_load_model
    c_f.save_model = atomic_save_model


# -- resumable training state ------------------------------------------------------------------


def rng_state() -> dict:
    state = {
        'python': random.getstate(),
        'numpy': _numpy_state(),
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state() -> tuple:
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss


def set_rng_state(state: dict) -> None:
    random.setstate(_as_tuples(state['python']))
    kind, keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _as_tuples(value):
    """``random.setstate`` needs tuples; keep them tuples after any container round trip."""
    if isinstance(value, list | tuple):
        return tuple(_as_tuples(v) for v in value)
    return value


def training_state(trainer) -> dict:
    parts = {
        part: {name: obj.state_dict() for name, obj in (getattr(trainer, part, None) or {}).items()}
        for part in PARTS
    }
    sampler = getattr(trainer, 'sampler', None)
    return {
        'epoch': int(trainer.epoch),
        'parts': parts,
        'sampler_epoch': getattr(sampler, 'epoch', None),
        'rng': rng_state(),
    }


def load_training_state(trainer, state: dict, path: str) -> None:
    for part in PARTS:
        objects = getattr(trainer, part, None) or {}
        saved = state['parts'].get(part, {})
        if set(objects) != set(saved):
            raise CheckpointError(
                f'{path}: the run saved {part} {sorted(saved)}, this config builds '
                f'{sorted(objects)}; resume with the config that wrote it.'
            )
        for name, obj in objects.items():
            obj.load_state_dict(saved[name])
    sampler = getattr(trainer, 'sampler', None)
    if state.get('sampler_epoch') is not None and hasattr(sampler, 'epoch'):
        sampler.epoch = state['sampler_epoch']
    set_rng_state(state['rng'])


def state_files(folder: str | Path) -> list[tuple[int, Path]]:
    """(epoch, path) of the training states in ``folder``, newest first."""
    found = []
    for path in Path(folder).glob('training_state_epoch_*.pth'):
        match = _STATE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found, reverse=True)


class TrainingStateHook:
    """PML ``end_of_epoch_hook``: write the resumable training state of every epoch
    atomically to ``{folder}/training_state_epoch_{e}.pth`` and keep the newest ``keep``
    (the previous one is the fallback should the newest ever be unreadable). Chain it last,
    after the tester, so the random states it saves are those the next epoch starts from.

    Args:
        folder: where the states go (the run's ``saved_models``).
        keep: how many states to keep. Defaults to 2.
    """

    def __init__(self, folder: str, keep: int = 2) -> None:
        self.folder = Path(folder)
        self.keep = max(1, keep)

    def __call__(self, trainer) -> None:
        atomic_torch_save(training_state(trainer), self.folder / STATE_NAME.format(trainer.epoch))
        for _, old in state_files(self.folder)[self.keep :]:  # only after the new one is in
            old.unlink(missing_ok=True)


def resume_training(trainer, hooks, folder: str, device) -> int:
    """Load the newest complete training state of ``folder`` into ``trainer`` and return the
    epoch to start from; broken states are skipped with a warning naming them. A work dir
    holding only PML's own saved models (written before training states existed) resumes
    from them, safely and not bit-exactly; with nothing at all, 1 (from scratch)."""
    removed, freed = remove_stale_temporaries(folder)
    if removed:
        LOGGER.warning(
            f'removed {removed} temporary file(s) ({freed} bytes) of interrupted saves in {folder}'
        )
    skipped = []
    for epoch, path in state_files(folder):
        try:
            state = safe_torch_load(path, map_location=device)
        except CheckpointError as error:
            skipped.append(str(error))
            continue
        load_training_state(trainer, state, str(path))
        if skipped:
            LOGGER.warning('resume: skipped ' + '; '.join(skipped))
        LOGGER.info(f'resume: resumed from the end of epoch {epoch} ({path})')
        return epoch + 1
    if skipped:
        raise CheckpointError(
            f'resume: no complete training state in {folder}: ' + '; '.join(skipped) + '. '
            'Drop --resume to start afresh.'
        )
    start = hooks.load_latest_saved_models(trainer, folder, device)  # safe: install_safe_pml_io
    if start > 1:
        LOGGER.warning(
            f'resume: no training state in {folder}; resumed from PML saved models of epoch '
            f'{start - 1} (random states and sampler position not restored: not bit-exact)'
        )
    else:
        LOGGER.warning(f'resume: nothing to resume from in {folder}; training from scratch')
    return start


install_safe_pml_io()
