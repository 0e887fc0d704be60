"""Plot learned pooling weights over ranks (GPO's theta) for each branch, every epoch."""

from __future__ import annotations

import os.path as osp
from collections.abc import Sequence

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from gpo_plugin.models.necks.base_set_pooling import BaseSetPooling, rank_weights
from gpo_plugin.registry import HOOKS


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
        self.set_sizes = [int(n) for n in set_sizes]
        if not self.set_sizes or min(self.set_sizes) < 1:
            raise ValueError(f'PoolingWeightsHook: set_sizes must be positive, got {set_sizes}.')
        self.out_dir = out_dir
        self.interval = interval

    def after_train_epoch(self, runner) -> None:
        if not self.every_n_epochs(runner, self.interval) or runner.rank != 0:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        for name, module in learned_rank_poolers(model):
            image = self.plot(module, name, runner.epoch + 1)
            path = osp.join(
                runner.work_dir,
                self.out_dir,
                f'epoch_{runner.epoch + 1}_{name.replace(".", "_")}.png',
            )
            self.save_png(image, path)
            # No '/' in the name: LocalVisBackend writes '{name}_{step}.png' into one folder.
            runner.visualizer.add_image(f'pooling_weights_{name}', image, step=runner.epoch + 1)

    @torch.no_grad()
    def weights(self, pooler: BaseSetPooling) -> list[np.ndarray]:
        """The weights over ranks for each set size, read from pooling zero sets."""
        table = rank_weights(pooler, self.set_sizes).float().cpu().numpy()
        return [row[:n] for row, n in zip(table, self.set_sizes, strict=True)]

    def plot(self, pooler, name: str, epoch: int) -> np.ndarray:
        """An RGB (H, W, 3) uint8 image of theta against position."""
        import matplotlib

        matplotlib.use('Agg')
        from matplotlib import pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
        for n, theta in zip(self.set_sizes, self.weights(pooler), strict=True):
            ax.plot(np.arange(n), theta, marker='o', markersize=3, label=f'N = {n}')
        ax.set_xlabel('position k (descending order)')
        ax.set_ylabel('theta_k')
        ax.set_title(f'{name}, epoch {epoch}')
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.canvas.draw()
        image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
        plt.close(fig)
        return image

    @staticmethod
    def save_png(image: np.ndarray, path: str) -> None:
        import matplotlib.image as mpimg
        from mmengine.utils import mkdir_or_exist

        mkdir_or_exist(osp.dirname(path))
        mpimg.imsave(path, image)


def learned_rank_poolers(model: torch.nn.Module) -> list[tuple[str, BaseSetPooling]]:
    """(name, pooler) for every pooler in ``model`` with parameters and weights over ranks."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, BaseSetPooling)
        and module.weights_over == 'rank'
        and next(module.parameters(), None) is not None
    ]


def plot_weight_maps(images, weights, titles: Sequence[str], title: str) -> np.ndarray:
    """Images (top row) above their pooling-weight maps (bottom row): an RGB (H, W, 3) uint8
    picture. ``images`` (K, h, w) grey values, ``weights`` (K, H', W') weight grids."""
    import matplotlib

    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    count = len(images)
    fig, axes = plt.subplots(2, count, figsize=(1.1 * count, 2.5), dpi=120, squeeze=False)
    vmax = float(max(float(w.max()) for w in weights))
    for col in range(count):
        axes[0, col].imshow(images[col], cmap='gray')
        axes[0, col].set_title(titles[col], fontsize=8)
        axes[1, col].imshow(weights[col], cmap='magma', vmin=0, vmax=vmax)
        for row in range(2):
            axes[row, col].axis('off')
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image
