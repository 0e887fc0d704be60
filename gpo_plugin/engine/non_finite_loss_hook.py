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


def non_finite_input_rows(data_batch) -> list[int]:
    """Batch positions whose float inputs hold NaN/inf (``inputs`` a batched tensor, a dict
    of them, or a list of per-sample tensors); the likely culprits of a non-finite loss."""
    inputs = data_batch.get('inputs') if isinstance(data_batch, dict) else None
    if isinstance(inputs, list | tuple):
        return [i for i, x in enumerate(inputs) if _is_float(x) and not x.isfinite().all()]
    tensors = inputs.values() if isinstance(inputs, dict) else [inputs]
    bad: set[int] = set()
    for x in tensors:
        if _is_float(x) and x.dim() > 0:
            bad.update((~x.isfinite()).reshape(len(x), -1).any(1).nonzero().flatten().tolist())
    return sorted(bad)


def _is_float(x) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point()


def describe_samples(data_batch) -> str:
    """The samples with non-finite inputs (if any), then every sample id, with counts."""
    ids = batch_sample_ids(data_batch)
    if not ids:
        return 'Sample ids of the batch: not available.'
    size = max(len(v) for v in ids.values())
    text = f'Sample ids of the batch (all {size}): ' + ', '.join(f'{k}={v}' for k, v in ids.items())
    rows = non_finite_input_rows(data_batch)
    if rows:
        named = ', '.join(f'{k}={[v[r] for r in rows if r < len(v)]}' for k, v in ids.items())
        text = (
            f'Samples with non-finite inputs ({len(rows)} of {size}, batch positions {rows}): '
            f'{named}. {text}'
        )
    return text + '.'


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise :class:`NonFiniteLossError` when a training iteration's loss is NaN or infinite.

    One bad value (a NaN feature, an overflow) turns every gradient and then every parameter
    into NaN, and gradient clipping does not stop it. The error names the iteration, the epoch,
    each loss term's value, the samples whose inputs hold NaN/inf (the loss terms are batch
    means, so a sample's own term is not available) and every sample id of the batch, with
    the count. It runs before the checkpoint hook, so
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
        raise NonFiniteLossError(
            f'non-finite training loss at iteration {runner.iter + 1} (epoch {runner.epoch + 1}, '
            f'batch {batch_idx} of the epoch): {values}. {describe_samples(data_batch)} '
            'Check these samples for NaN/inf inputs (tools/check_dataset.py CONFIG), or lower '
            'the learning rate.'
        )
