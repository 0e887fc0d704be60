"""A progress display with items/s over the embedding extraction of validation and test."""

from __future__ import annotations

import sys
import time

from mmengine.hooks import Hook
from mmengine.utils import ProgressBar

from gpo_plugin.registry import HOOKS


class PlainProgress:
    """Progress as whole lines, one every ``step`` percent: for logs that are files
    (CI, ``nohup``, cluster jobs), where a bar's carriage returns pile up on one line.

    Args:
        total: items to process.
        file: where the lines go.
        step: percent between two lines.
    """

    def __init__(self, total: int, file, step: int = 10) -> None:
        self.total, self.file, self.step = max(total, 1), file, step
        self.done, self.next_percent, self.start = 0, step, time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.done += n
        percent = 100 * self.done // self.total
        if percent < self.next_percent:
            return
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else float('inf')
        self.file.write(
            f'embedded {self.done}/{self.total} ({min(percent, 100)}%), {rate:.0f} items/s, '
            f'{elapsed:.0f} s\n'
        )
        self.file.flush()
        self.next_percent = (percent // self.step + 1) * self.step

    def finish(self) -> None:
        pass


@HOOKS.register_module()
class EmbeddingProgressHook(Hook):
    """Show mmengine's ``ProgressBar`` (done/total, items/s, ETA) while the val/test loop
    embeds its dataset, instead of only a log line every few batches.

    Only rank 0 draws. Counts samples (captions with their images), not batches. When
    stdout is not a terminal (a log file), it prints a plain line every ``step`` percent
    instead of redrawing the bar.

    Args:
        step: percent between two lines when stdout is not a terminal. Defaults to 10.
    """

    priority = 'VERY_LOW'

    def __init__(self, step: int = 10) -> None:
        self.step = step
        self._bar: ProgressBar | PlainProgress | None = None

    def _start(self, runner, loader) -> None:
        if runner.rank != 0:
            return
        # sys.stdout looked up now (not at import), so redirections apply.
        out, total = sys.stdout, len(loader.dataset)
        interactive = getattr(out, 'isatty', lambda: False)()
        self._bar = (
            ProgressBar(total, file=out) if interactive else PlainProgress(total, out, self.step)
        )

    def _step(self, data_batch) -> None:
        if self._bar is None:
            return
        inputs = data_batch.get('inputs', {}) if isinstance(data_batch, dict) else {}
        size = next((len(v) for v in inputs.values() if hasattr(v, '__len__')), 1)
        self._bar.update(size)

    def _stop(self) -> None:
        if isinstance(self._bar, ProgressBar):
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
