"""Hooks for PML's trainers: pooling-weight pictures per epoch and the data-dependent
initialisation of poolers (GSP's prototypes), composable with ``logging_presets.HookContainer``'s
hooks."""

from __future__ import annotations

import os.path as osp
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from gpo_plugin.models.necks.base_set_pooling import BaseSetPooling
from gpo_plugin.visualization import (
    RankWeightPanel,
    check_set_sizes,
    draw_position_weights,
    draw_rank_weights,
    learned_rank_poolers,
    rank_weight_curves,
    save_png,
)

from .embedder import pool_trunk_output

Hook = Callable[[object], object]


def chain_hooks(*hooks: Hook | None) -> Hook:
    """One PML hook calling each of ``hooks`` in order (None entries skipped); it returns
    False (stop training, as ``HookContainer``'s early stopping does) when any of them does."""
    active = [hook for hook in hooks if hook is not None]

    def run(trainer_or_tester):
        results = [hook(trainer_or_tester) for hook in active]
        return False if any(result is False for result in results) else None

    return run


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, 'module', model)


@torch.no_grad()
def init_gsp_prototypes(
    trunk: nn.Module, embedder: nn.Module, dataloader, device=None, max_batches: int = 100
) -> int:
    """Initialise every pooler in ``embedder`` that ``awaits_data_init`` (GSP: k-center of
    its prototypes over the pooled projected features of as many images as it has prototypes)
    from the first training batches, before any optimizer step. Returns the number of
    batches used.

    GSP does the same by itself during its first training forwards; call this before
    ``trainer.train`` to do it with the trunk in eval mode, or use :class:`GSPPrototypeInit`.
    """
    pending = _awaiting_init(embedder)
    used = 0
    if not pending:
        return used
    device = device or next(trunk.parameters()).device
    was_training = trunk.training
    trunk.eval()
    for batch in dataloader:
        trunk_output = trunk(batch[0].to(device))
        for pooler in pending:
            pooler.train()
            pool_trunk_output(pooler, trunk_output)  # GSP: collects, k-centers once m are in
        used += 1
        pending = [m for m in pending if m.awaits_data_init]
        if not pending or used >= max_batches:
            break
    trunk.train(was_training)
    if pending:
        raise RuntimeError(
            f'init_gsp_prototypes: {type(pending[0]).__name__} is still not initialised after '
            f'{used} batches (GSP needs as many pooled embeddings as it has prototypes, '
            'num_prototypes); raise max_batches.'
        )
    return used


def _awaiting_init(embedder: nn.Module) -> list[BaseSetPooling]:
    modules = _unwrap(embedder).modules()
    return [m for m in modules if isinstance(m, BaseSetPooling) and m.awaits_data_init]


class GSPPrototypeInit:
    """PML ``end_of_iteration_hook``: on its first call, :func:`init_gsp_prototypes` from the
    trainer's dataloader for GSPs still waiting for their prototypes (no-op afterwards)."""

    def __init__(self, max_batches: int = 100) -> None:
        self.max_batches = max_batches
        self.done = False

    def __call__(self, trainer) -> None:
        if self.done:
            return
        models = trainer.models
        init_gsp_prototypes(
            models['trunk'],
            models['embedder'],
            trainer.dataloader,
            trainer.data_device,
            self.max_batches,
        )
        self.done = True


class PoolingWeightsPMLHook:
    """PML ``end_of_epoch_hook``: every ``interval`` epochs, a PNG per pooler in
    ``{out_dir}/epoch_{e}_{name}.png`` and, with a record-keeper that has a TensorBoard
    writer, the same picture in TensorBoard (tag ``pooling_weights/{name}``).

    Poolers with learned weights over ranks (GPO): theta_k against rank for ``set_sizes``
    (as mmengine's ``PoolingWeightsHook``). Poolers with weights over positions (GSP): their
    weights over the feature grid of ``images`` (needs images).

    Args:
        out_dir: folder of the PNGs (e.g. next to the record-keeper's TensorBoard folder).
        images: (K, C, H, W) normalised input images for GSP's weight maps, or None.
        titles: K captions (e.g. class names) for those images.
        record_keeper: PML's record-keeper (``logging_presets.get_record_keeper``), or None.
        set_sizes: GPO set sizes. Defaults to (5, 10, 20, 36).
        interval: every how many epochs. Defaults to 1.
    """

    def __init__(
        self,
        out_dir: str,
        images: Tensor | None = None,
        titles: Sequence[str] | None = None,
        record_keeper=None,
        set_sizes: Sequence[int] = (5, 10, 20, 36),
        interval: int = 1,
    ) -> None:
        self.out_dir = out_dir
        self.images = images
        self.titles = list(titles) if titles is not None else None
        self.record_keeper = record_keeper
        self.set_sizes = check_set_sizes(set_sizes, 'PoolingWeightsPMLHook')
        self.interval = interval
        self.saved: list[str] = []

    def __call__(self, trainer) -> None:
        epoch = trainer.epoch
        if epoch % self.interval:
            return
        embedder = _unwrap(trainer.models['embedder'])
        for name, module in learned_rank_poolers(embedder):
            curves = rank_weight_curves(module, self.set_sizes)
            picture = draw_rank_weights([RankWeightPanel(f'{name}, epoch {epoch}', curves)])
            self.save(picture, name or 'pooler', epoch)
        if self.images is None:
            return
        trunk = _unwrap(trainer.models['trunk'])
        for name, module in embedder.named_modules():
            if isinstance(module, BaseSetPooling) and module.weights_over == 'position':
                self.save(self.position_picture(trunk, module, epoch), name or 'pooler', epoch)

    @torch.no_grad()
    def position_picture(self, trunk: nn.Module, pooler: BaseSetPooling, epoch: int):
        """``images`` above the pooler's weights over their feature grid (B, H, W)."""
        was_training = trunk.training, pooler.training
        trunk.eval()
        pooler.eval()
        device = next(trunk.parameters()).device
        weights = pool_trunk_output(pooler, trunk(self.images.to(device))).weights.cpu()
        trunk.train(was_training[0])
        pooler.train(was_training[1])
        grey = self.images.float().mean(1)
        titles = self.titles or [str(i) for i in range(len(grey))]
        grid = 'x'.join(map(str, weights.shape[1:]))
        title = f'{type(pooler).__name__} weights ({grid} grid), epoch {epoch}'
        return draw_position_weights(grey, weights, titles, title)

    def save(self, picture, name: str, epoch: int) -> None:
        path = osp.join(self.out_dir, f'epoch_{epoch}_{name.replace(".", "_")}.png')
        save_png(picture, path)
        self.saved.append(path)
        writer = getattr(self.record_keeper, 'tensorboard_writer', None)
        if writer is not None:
            writer.add_image(f'pooling_weights/{name}', picture, epoch, dataformats='HWC')
