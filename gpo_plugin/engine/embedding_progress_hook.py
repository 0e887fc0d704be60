"""A progress bar with items/s over the embedding extraction of validation and test."""

from __future__ import annotations

import sys

from mmengine.hooks import Hook
from mmengine.utils import ProgressBar

from gpo_plugin.registry import HOOKS


@HOOKS.register_module()
class EmbeddingProgressHook(Hook):
    """Show mmengine's ``ProgressBar`` (done/total, items/s, ETA) while the val/test loop
    embeds its dataset, instead of only a log line every few batches.

    Only rank 0 draws. Counts samples (captions with their images), not batches.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._bar: ProgressBar | None = None

    def _start(self, runner, loader) -> None:
        if runner.rank == 0:
            # sys.stdout looked up now (not at import), so redirections apply.
            self._bar = ProgressBar(len(loader.dataset), file=sys.stdout)

    def _step(self, data_batch) -> None:
        if self._bar is None:
            return
        inputs = data_batch.get('inputs', {}) if isinstance(data_batch, dict) else {}
        size = next((len(v) for v in inputs.values() if hasattr(v, '__len__')), 1)
        self._bar.update(size)

    def _stop(self) -> None:
        if self._bar is not None:
            self._bar.file.write('\n')
            self._bar.file.flush()
        self._bar = None

    def before_val_epoch(self, runner) -> None:
        self._start(runner, runner.val_dataloader)

    def before_test_epoch(self, runner) -> None:
        self._start(runner, runner.test_dataloader)

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._step(data_batch)

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._step(data_batch)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._stop()

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._stop()
