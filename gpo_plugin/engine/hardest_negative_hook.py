"""Switch the VSE++ loss to hardest negatives after a warm-up (docs/vse.md#recipe)."""

from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from gpo_plugin.registry import HOOKS


@HOOKS.register_module()
class HardestNegativeHook(Hook):
    """Set ``max_violation`` of every loss module that has it to ``epoch >= warmup_epochs``.

    It runs before each training epoch, so the switch follows the epoch (and is right
    after a resume): all negatives during the warm-up, only the hardest one after.

    Args:
        warmup_epochs: epochs that use all negatives. Defaults to 1.
    """

    priority = 'NORMAL'

    def __init__(self, warmup_epochs: int = 1) -> None:
        if warmup_epochs < 0:
            raise ValueError(
                f'HardestNegativeHook: warmup_epochs must be >= 0, got {warmup_epochs}.'
            )
        self.warmup_epochs = warmup_epochs

    def before_train_epoch(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        hardest = runner.epoch >= self.warmup_epochs
        losses = [m for m in model.modules() if hasattr(m, 'max_violation')]
        if not losses:
            raise RuntimeError(
                'HardestNegativeHook: the model has no loss with a '
                '`max_violation` attribute (e.g. VSEContrastiveLoss); remove the hook '
                'from custom_hooks or use such a loss.'
            )
        for loss in losses:
            if loss.max_violation != hardest:
                runner.logger.info(
                    f'HardestNegativeHook: epoch {runner.epoch}: max_violation -> {hardest}'
                )
            loss.max_violation = hardest
