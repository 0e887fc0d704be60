"""Plot learned pooling weights over ranks (GPO's theta) for each branch, every epoch."""

from __future__ import annotations

import os.path as osp
from collections.abc import Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from gpo_plugin.registry import HOOKS
from gpo_plugin.visualization import (
    RankWeightPanel,
    check_set_sizes,
    draw_rank_weights,
    learned_rank_poolers,
    rank_weight_curves,
    save_png,
)


@HOOKS.register_module()
class PoolingWeightsHook(Hook):
    """Save a PNG of theta_k (k = 0..N-1) for several set sizes N, one per pooler, after
    each training epoch, and log it to the visualizer (TensorBoard when enabled).

    Plotted are the poolers (``BaseSetPooling`` sub-modules) with parameters whose weights
    are over ranks (``weights_over == 'rank'``: GPO; the fixed max / K-max / average weights
    are skipped). Their weights come from the pooling contract: a zero input with the wanted
    set sizes is pooled and ``PoolingOutput.weights`` is read. The branch name is the module
    path, e.g. ``img_enc.gpool``. Files go to ``{work_dir}/{out_dir}/epoch_{e}_{branch}.png``.

    Args:
        set_sizes: set sizes N to draw. Defaults to (5, 10, 20, 36).
        out_dir: sub-folder of the work dir. Defaults to ``'pooling_weights'``.
        interval: every how many epochs. Defaults to 1.
    """

    priority = 'LOW'

    def __init__(
        self,
        set_sizes: Sequence[int] = (5, 10, 20, 36),
        out_dir: str = 'pooling_weights',
        interval: int = 1,
    ) -> None:
        self.set_sizes = check_set_sizes(set_sizes, 'PoolingWeightsHook')
        self.out_dir = out_dir
        self.interval = interval

    def after_train_epoch(self, runner) -> None:
        if not self.every_n_epochs(runner, self.interval) or runner.rank != 0:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        for name, module in learned_rank_poolers(model):
            curves = rank_weight_curves(module, self.set_sizes)
            image = draw_rank_weights(
                [RankWeightPanel(f'{name}, epoch {runner.epoch + 1}', curves)]
            )
            path = osp.join(
                runner.work_dir,
                self.out_dir,
                f'epoch_{runner.epoch + 1}_{name.replace(".", "_")}.png',
            )
            save_png(image, path)
            # No '/' in the name: LocalVisBackend writes '{name}_{step}.png' into one folder.
            runner.visualizer.add_image(f'pooling_weights_{name}', image, step=runner.epoch + 1)
