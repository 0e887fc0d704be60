"""Hooks for PML's trainers: pooling-weight pictures per epoch and GSP's prototype
initialisation, composable with ``logging_presets.HookContainer``'s hooks."""

from __future__ import annotations

import os.path as osp
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from gpo_plugin.engine.pooling_weights_hook import PoolingWeightsHook, plot_weight_maps
from gpo_plugin.models.necks.gsp import GSP

from .embedder import _split_trunk_output

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
    """k-center initialisation of every not yet initialised GSP in ``embedder`` from the
    first training batches (pooled projected features of as many images as it has
    prototypes), before any optimizer step. Returns the number of batches used.

    GSP does the same by itself during its first training forwards; call this before
    ``trainer.train`` to do it with the trunk in eval mode, or use :class:`GSPPrototypeInit`.
    """
    pending = [m for m in _unwrap(embedder).modules() if isinstance(m, GSP)]
    pending = [m for m in pending if not bool(m.prototypes_initialised)]
    used = 0
    if not pending:
        return used
    device = device or next(trunk.parameters()).device
    was_training = trunk.training
    trunk.eval()
    for batch in dataloader:
        features, lengths = _split_trunk_output(trunk(batch[0].to(device)))
        if features.dim() == 4:
            features = features.flatten(2).transpose(1, 2)
        for gsp in pending:
            gsp.train()
            gsp.pool_full(features)  # collects, and k-centers once m embeddings are in
        used += 1
        pending = [m for m in pending if not bool(m.prototypes_initialised)]
        if not pending or used >= max_batches:
            break
    trunk.train(was_training)
    if pending:
        raise RuntimeError(
            f'init_gsp_prototypes: {used} batches gave fewer pooled embeddings than '
            f'num_prototypes = {pending[0].num_prototypes}; raise max_batches.'
        )
    return used


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

    GPO: theta_k against position for ``set_sizes`` (as mmengine's ``PoolingWeightsHook``).
    GSP: its transport weights over the feature grid of ``images`` (needs images).

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
        self.gpo_plotter = PoolingWeightsHook(set_sizes)
        self.interval = interval
        self.saved: list[str] = []

    def __call__(self, trainer) -> None:
        epoch = trainer.epoch
        if epoch % self.interval:
            return
        embedder = _unwrap(trainer.models['embedder'])
        for name, module in embedder.named_modules():
            if callable(getattr(module, 'pool_weights', None)):
                picture = self.gpo_plotter.plot(module, name, epoch)
            elif isinstance(module, GSP) and self.images is not None:
                picture = self.gsp_picture(_unwrap(trainer.models['trunk']), module, epoch)
            else:
                continue
            self.save(picture, name or 'pooler', epoch)

    @torch.no_grad()
    def gsp_picture(self, trunk: nn.Module, gsp: GSP, epoch: int):
        was_training = trunk.training, gsp.training
        trunk.eval()
        gsp.eval()
        device = next(trunk.parameters()).device
        features, _ = _split_trunk_output(trunk(self.images.to(device)))
        weights = gsp.pool_map_full(features).weights.cpu()
        trunk.train(was_training[0])
        gsp.train(was_training[1])
        grey = self.images.float().mean(1)
        titles = self.titles or [str(i) for i in range(len(grey))]
        grid = 'x'.join(map(str, weights.shape[1:]))
        return plot_weight_maps(grey, weights, titles, f'GSP weights ({grid} grid), epoch {epoch}')

    def save(self, picture, name: str, epoch: int) -> None:
        path = osp.join(self.out_dir, f'epoch_{epoch}_{name.replace(".", "_")}.png')
        PoolingWeightsHook.save_png(picture, path)
        self.saved.append(path)
        writer = getattr(self.record_keeper, 'tensorboard_writer', None)
        if writer is not None:
            writer.add_image(f'pooling_weights/{name}', picture, epoch, dataformats='HWC')
