"""Grid-feature recipe of VSE∞: frozen backbone first, then a linear loss ramp."""

from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from gpo_plugin.registry import HOOKS


def warmup_loss_scale(
    epoch: int, batch_idx: int, iters_per_epoch: int, freeze: int, ramp: int
) -> float:
    """Loss multiplier: 1 while frozen, ``(i + 1) / (ramp · L)`` through the ramp epochs
    (i = iterations since the backbone was unfrozen, L = iterations per epoch), then 1."""
    if epoch < freeze or epoch >= freeze + ramp or ramp == 0:
        return 1.0
    done = (epoch - freeze) * iters_per_epoch + batch_idx
    return min(1.0, done / (ramp * iters_per_epoch))


@HOOKS.register_module()
class BackboneWarmupHook(Hook):
    """Freeze the image backbone for ``freeze_epochs``, then ramp the loss 0 -> 1.

    Before each training epoch, every sub-module with ``set_backbone_trainable`` (e.g.
    ``BackboneGridEncoder``) is frozen when ``epoch < freeze_epochs`` and trainable
    otherwise. Before each iteration of the next ``ramp_epochs`` epochs the model's
    ``loss_scale`` grows linearly from 0 to 1 (VSE∞ warms up a freshly unfrozen CNN this
    way); it is 1 everywhere else. Both follow from ``(epoch, batch index)`` only, so a
    resumed run gets them right.

    Args:
        freeze_epochs: epochs with a frozen backbone. Defaults to 1.
        ramp_epochs: epochs of the linear loss ramp after that. Defaults to 1.
    """

    priority = 'NORMAL'

    def __init__(self, freeze_epochs: int = 1, ramp_epochs: int = 1) -> None:
        if freeze_epochs < 0 or ramp_epochs < 0:
            raise ValueError(
                'BackboneWarmupHook: freeze_epochs and ramp_epochs must be >= 0, got '
                f'{freeze_epochs} and {ramp_epochs}.'
            )
        self.freeze_epochs, self.ramp_epochs = freeze_epochs, ramp_epochs

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_train_epoch(self, runner) -> None:
        model = self._model(runner)
        encoders = [
            m for m in model.modules() if callable(getattr(m, 'set_backbone_trainable', None))
        ]
        if not encoders:
            raise RuntimeError(
                'BackboneWarmupHook: the model has no encoder with `set_backbone_trainable` '
                '(e.g. BackboneGridEncoder); remove the hook from custom_hooks.'
            )
        trainable = runner.epoch >= self.freeze_epochs
        for encoder in encoders:
            encoder.set_backbone_trainable(trainable)
        runner.logger.info(
            f'BackboneWarmupHook: epoch {runner.epoch}: backbone trainable={trainable}'
        )

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        model = self._model(runner)
        model.loss_scale = warmup_loss_scale(
            runner.epoch,
            batch_idx,
            len(runner.train_dataloader),
            self.freeze_epochs,
            self.ramp_epochs,
        )
