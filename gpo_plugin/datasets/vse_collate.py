"""Collation of VSE∞ samples into padded tensors plus lengths."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from gpo_plugin.registry import FUNCTIONS


@FUNCTIONS.register_module()
def vse_collate(batch: Sequence[dict]) -> dict:
    """Batch a list of :class:`PackVSEInputs` outputs.

    Use it from a config as ``collate_fn=dict(type='vse_collate')``. Sets (region
    features (R, D), token ids (T,)) are zero-padded with their lengths; raw images
    (3, H, W) are stacked (all the same size: end the image pipeline with a fixed-size
    resize) and get no lengths.

    Returns:
        ``dict(inputs=dict(img=(B, R_max, D) or (B, 3, H, W), img_lengths=(B,) (sets only),
        txt=(B, T_max), txt_lengths=(B,)[, img_drop_rate (B,), img_drop_seed (B,)]),
        data_samples=dict(img_idx=(B,), cap_idx=(B,)))``; absent sides are left out.
    """
    if not batch:
        raise ValueError('vse_collate: got an empty batch.')
    if not all(_is_packed(sample) for sample in batch):
        raise ValueError(
            'vse_collate: samples must be dict(inputs=dict(img=..., txt=...), '
            'data_samples=dict(img_idx=..., cap_idx=...)); end the dataset pipeline with '
            'PackVSEInputs.'
        )
    inputs = {}
    keys = set(batch[0]['inputs'])
    if 'img' in keys:
        inputs['img'], lengths = _collate_image_side([s['inputs']['img'] for s in batch])
        if lengths is not None:
            inputs['img_lengths'] = lengths
    if 'txt' in keys:
        inputs['txt'], inputs['txt_lengths'] = _pad([s['inputs']['txt'] for s in batch])
    if 'img_drop_rate' in keys:
        inputs['img_drop_rate'] = torch.tensor([s['inputs']['img_drop_rate'] for s in batch])
        inputs['img_drop_seed'] = torch.tensor(
            [s['inputs']['img_drop_seed'] for s in batch], dtype=torch.long
        )
    samples = {
        key: torch.tensor([s['data_samples'][key] for s in batch], dtype=torch.long)
        for key in ('img_idx', 'cap_idx')
        if key in batch[0]['data_samples']
    }
    return dict(inputs=inputs, data_samples=samples)


def _pad(items: list[Tensor]) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([len(x) for x in items], dtype=torch.long)
    return pad_sequence(items, batch_first=True), lengths


def _collate_image_side(items: list[Tensor]) -> tuple[Tensor, Tensor | None]:
    if items[0].dim() == 2:  # region sets (R, D)
        return _pad(items)
    shapes = {tuple(x.shape) for x in items}
    if len(shapes) > 1:
        raise ValueError(
            f'vse_collate: raw images of different sizes in one batch {sorted(shapes)}; end '
            "the image pipeline with a fixed-size resize (dict(type='Resize', scale=(512, 512), "
            'keep_ratio=False)).'
        )
    return torch.stack(items), None


def _is_packed(sample) -> bool:
    return (
        isinstance(sample, dict)
        and isinstance(sample.get('inputs'), dict)
        and bool({'img', 'txt'} & set(sample['inputs']))
        and isinstance(sample.get('data_samples'), dict)
    )
