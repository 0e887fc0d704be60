"""mmengine's LoggerHook with an interval that fits short epochs."""

from __future__ import annotations

from mmengine.hooks import LoggerHook

from gpo_plugin.registry import HOOKS


@HOOKS.register_module()
class EpochFractionLoggerHook(LoggerHook):
    """``LoggerHook`` that logs at least ``lines_per_epoch`` times an epoch.

    A fixed ``interval`` of 50 iterations gives one line per epoch (the end-of-epoch line)
    on a set of a few thousand pairs; here the interval becomes
    ``min(interval, iterations per epoch // lines_per_epoch)`` (at least 1) when training
    starts, so short epochs still show progress and long ones keep ``interval``.

    Args:
        interval: the largest number of iterations between two lines. Defaults to 50.
        lines_per_epoch: the fewest lines an epoch gives. Defaults to 4.
        **kwargs: the other arguments of mmengine's ``LoggerHook``.
    """

    def __init__(self, interval: int = 50, lines_per_epoch: int = 4, **kwargs) -> None:
        super().__init__(interval=interval, **kwargs)
        self.lines_per_epoch = lines_per_epoch

    def before_train(self, runner) -> None:
        try:
            iters = len(runner.train_dataloader)
        except TypeError:  # an iterable without a length: keep the interval
            return
        self.interval = max(1, min(self.interval, iters // self.lines_per_epoch))
