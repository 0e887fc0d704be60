"""Per-sample randomness keyed by (seed, epoch, sample index), so resumed runs are exact.

Data transforms of mmcv, mmpretrain and this package draw from the global ``np.random`` (and
``random``, ``torch``). Seeding loader workers once (``seed + worker_id``) makes a sample's
augmentation depend on everything the worker drew before it, which a resumed run cannot
reproduce. :class:`SampleSeedHook` puts a :class:`SeedSample` step at the head of the training
dataset's pipeline that reseeds all three generators from (seed, epoch, ``sample_idx``) right
before the sample's transforms run. The epoch lives in a shared-memory tensor written by the
hook before each epoch, so workers started earlier (``persistent_workers=True``, fork or spawn)
read the current value. See docs/architecture.md, "Randomness and resume".
"""

from __future__ import annotations

import random

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.runner import EpochBasedTrainLoop

from gpo_plugin.registry import HOOKS

# Keys that separate the per-sample streams from the main process's per-epoch stream.
_SAMPLE, _MAIN = 0, 1


def seed_everything_from(*key: int, devices: bool = False) -> None:
    """Seed ``random``, ``np.random`` and torch's CPU generator from an integer key; with
    ``devices``, torch's accelerator generators too (``torch.manual_seed``, ~100x slower: the
    per-sample path leaves it out, loader workers do not draw on accelerators)."""
    state = np.random.SeedSequence([k & 0xFFFFFFFF for k in key]).generate_state(4)
    np.random.seed(state)
    random.seed(int(state[0]) << 32 | int(state[1]))
    torch_seed = int(state[2]) << 32 | int(state[3])
    if devices:
        torch.manual_seed(torch_seed)
    else:
        torch.default_generator.manual_seed(torch_seed)


class SeedSample:
    """Pipeline step: reseed the global generators from (seed, epoch, ``sample_idx``).

    ``sample_idx`` is the index mmengine's ``BaseDataset.get_data_info`` adds to every sample.

    Args:
        seed: the run's seed.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        # Shared memory: workers forked (or spawned) before an epoch starts see its number.
        self.epoch = torch.zeros((), dtype=torch.long).share_memory_()

    def __call__(self, results: dict) -> dict:
        if 'sample_idx' not in results:
            raise KeyError(
                'SeedSample: the sample has no `sample_idx`; per-sample seeding needs '
                "datasets whose get_data_info calls mmengine's BaseDataset.get_data_info "
                '(which sets it).'
            )
        seed_everything_from(self.seed, _SAMPLE, int(self.epoch), int(results['sample_idx']))
        return results

    def __repr__(self) -> str:
        return f'SeedSample(seed={self.seed})'


def _datasets(dataset):
    """The dataset and everything it wraps (Concat/Repeat/ClassBalanced wrappers)."""
    yield dataset
    for inner in getattr(dataset, 'datasets', None) or []:
        yield from _datasets(inner)
    inner = getattr(dataset, 'dataset', None)
    if inner is not None:
        yield from _datasets(inner)


@HOOKS.register_module()
class SampleSeedHook(Hook):
    """Make training randomness a function of (seed, epoch, sample index).

    Before training, inserts :class:`SeedSample` at the head of every pipeline of the training
    dataset (and of datasets it wraps); before each epoch, writes the epoch into it and
    reseeds the main process's generators from (seed, epoch, rank) (dropout, the loader's
    worker base seed). A run resumed from an epoch checkpoint thus draws exactly what the
    uninterrupted run drew. Epoch-based loops only: with an iteration-based loop the hook
    logs a warning and does nothing (there is no epoch to key the draws by).
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self.seeders: list[SeedSample] = []

    def before_train(self, runner) -> None:
        if not isinstance(runner.train_loop, EpochBasedTrainLoop):
            runner.logger.warning(
                'SampleSeedHook: per-sample seeding needs an epoch-based train loop; '
                'augmentation of this run is not reproducible across a resume.'
            )
            return
        seed = runner.seed if runner.seed is not None else 0
        self.seed, self.seeders = seed, []
        for dataset in _datasets(runner.train_dataloader.dataset):
            transforms = getattr(getattr(dataset, 'pipeline', None), 'transforms', None)
            if transforms is None:
                continue
            if transforms and isinstance(transforms[0], SeedSample):
                transforms.pop(0)
            transforms.insert(0, SeedSample(seed))
            self.seeders.append(transforms[0])
        if not self.seeders:
            runner.logger.warning(
                'SampleSeedHook: the training dataset has no mmengine pipeline; its '
                'augmentation is not seeded per sample.'
            )

    def before_train_epoch(self, runner) -> None:
        if not self.seeders:
            return
        for seeder in self.seeders:
            seeder.epoch.fill_(runner.epoch)
        seed_everything_from(self.seed, _MAIN, runner.epoch, get_rank(), devices=True)
