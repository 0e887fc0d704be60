"""Pictures of pooling weights, shared by the mmengine and PML hooks and the tools.

Two kinds: weights over ranks (GPO's theta_k against the sorted position k, one curve per set
size N) and weights over positions (GSP's weight on each cell of the feature grid, drawn under
the images they were computed on). Every drawing function returns an RGB (H, W, 3) uint8 array,
what ``Visualizer.add_image`` and TensorBoard's ``add_image(..., dataformats='HWC')`` take;
:func:`save_png` writes one to disk.
"""

from __future__ import annotations

import os.path as osp
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gpo_plugin.models.necks.base_set_pooling import BaseSetPooling, rank_weights


def learned_rank_poolers(model: nn.Module) -> list[tuple[str, BaseSetPooling]]:
    """(name, pooler) for every pooler in ``model`` with parameters and weights over ranks
    (GPO; the fixed max / K-max / average weights are left out)."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, BaseSetPooling)
        and module.weights_over == 'rank'
        and next(module.parameters(), None) is not None
    ]


def check_set_sizes(set_sizes: Sequence[int], caller: str) -> list[int]:
    """``set_sizes`` as a list of ints, or a ValueError naming ``caller`` unless all are >= 1."""
    sizes = [int(n) for n in set_sizes]
    if not sizes or min(sizes) < 1:
        raise ValueError(f'{caller}: set_sizes must be positive, got {set_sizes}.')
    return sizes


@torch.no_grad()
def rank_weight_curves(pooler: BaseSetPooling, set_sizes: Sequence[int]) -> list[np.ndarray]:
    """theta_k (k = 0..N-1) for each N of ``set_sizes``, read by pooling zero sets of those
    sizes (:func:`~gpo_plugin.models.necks.base_set_pooling.rank_weights`)."""
    table = rank_weights(pooler, set_sizes).float().cpu().numpy()
    return [row[:n] for row, n in zip(table, set_sizes, strict=True)]


@dataclass
class RankWeightPanel:
    """One panel of :func:`draw_rank_weights`.

    Args:
        title: the panel's title.
        curves: theta_k for each set size, the N-th of length N (solid lines).
        references: curves of the same sizes to compare against (dashed, same colours),
            or None.
    """

    title: str
    curves: Sequence[np.ndarray]
    references: Sequence[np.ndarray] | None = None


def draw_rank_weights(
    panels: Sequence[RankWeightPanel], title: str | None = None, dpi: int = 100
) -> np.ndarray:
    """Weights over ranks, one panel each, side by side: an RGB (H, W, 3) uint8 picture."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.2), dpi=dpi, squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        references = panel.references or [None] * len(panel.curves)
        for theta, reference in zip(panel.curves, references, strict=True):
            ranks = np.arange(len(theta))
            (line,) = ax.plot(ranks, theta, marker='o', markersize=3, label=f'N = {len(theta)}')
            if reference is not None:
                ax.plot(ranks, reference, '--', color=line.get_color(), alpha=0.6)
        ax.set_xlabel('position k (descending order)')
        ax.set_ylabel('theta_k')
        ax.set_title(panel.title)
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _to_rgb(fig)


def draw_position_weights(
    images: np.ndarray | torch.Tensor,
    weights: np.ndarray | torch.Tensor,
    titles: Sequence[str],
    title: str,
) -> np.ndarray:
    """Images (top row) above their pooling-weight maps (bottom row, one colour scale for all):
    an RGB (H, W, 3) uint8 picture.

    Args:
        images: (K, h, w) grey values.
        weights: (K, H', W') weight grids.
        titles: K captions (e.g. class names).
        title: the picture's title.
    """
    plt = _pyplot()
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
    return _to_rgb(fig)


def save_png(image: np.ndarray, path: str) -> None:
    """Write an RGB (H, W, 3) uint8 picture to ``path``, creating its folder."""
    import matplotlib.image as mpimg
    from mmengine.utils import mkdir_or_exist

    mkdir_or_exist(osp.dirname(path))
    mpimg.imsave(path, image)


def _pyplot():
    import matplotlib

    matplotlib.use('Agg')  # no display on training machines
    from matplotlib import pyplot as plt

    return plt


def _to_rgb(fig) -> np.ndarray:
    from matplotlib import pyplot as plt

    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image
