"""Stop training at the first non-finite loss, naming the iteration and the batch."""

from __future__ import annotations

import math

import torch
from mmengine.hooks import Hook

from gpo_plugin.registry import HOOKS


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def batch_sample_ids(data_batch) -> dict[str, list[int]]:
    """Identifiers of the samples of a training batch: ``img_idx``/``cap_idx`` of VSE batches,
    ``sample_idx`` of mmpretrain ``DataSample`` batches (empty when there are none)."""
    samples = data_batch.get('data_samples') if isinstance(data_batch, dict) else None
    if isinstance(samples, dict):
        return {
            key: torch.as_tensor(value).flatten().tolist()
            for key, value in samples.items()
            if key in ('img_idx', 'cap_idx', 'sample_idx')
        }
    if isinstance(samples, list | tuple):
        ids = [getattr(s, 'metainfo', {}).get('sample_idx') for s in samples]
        if any(i is not None for i in ids):
            return {'sample_idx': ids}
    return {}


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise :class:`NonFiniteLossError` when a training iteration's loss is NaN or infinite.

    One bad value (a NaN feature, an overflow) turns every gradient and then every parameter
    into NaN, and gradient clipping does not stop it. The error names the iteration, the epoch,
    each loss term's value and the batch's sample ids. It runs before the checkpoint hook, so
    no checkpoint of the poisoned parameters is written.
    """

    priority = 'VERY_HIGH'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not outputs:
            return
        values = {
            k: float(v.detach().float().mean()) if isinstance(v, torch.Tensor) else float(v)
            for k, v in outputs.items()
            if k.startswith('loss') or k == 'loss'
        }
        if all(math.isfinite(v) for v in values.values()):
            return
        ids = batch_sample_ids(data_batch)
        shown = ', '.join(f'{k}={v[:64]}' for k, v in ids.items()) or 'not available'
        raise NonFiniteLossError(
            f'non-finite training loss at iteration {runner.iter + 1} (epoch {runner.epoch + 1}, '
            f'batch {batch_idx} of the epoch): {values}. Sample ids of the batch: {shown}. '
            'Check these samples for NaN/inf inputs (tools/analysis_tools/check_dataset.py CONFIG), or lower '
            'the learning rate.'
        )
