"""Collation of VSE∞ samples into padded tensors plus lengths."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn.utils.rnn import pad_sequence

from gpo_plugin.registry import FUNCTIONS


@FUNCTIONS.register_module()
def vse_collate(batch: Sequence[dict]) -> dict:
    """Pad a list of :class:`PackVSEInputs` outputs.

    Use it from a config as ``collate_fn=dict(type='vse_collate')``.

    Returns:
        ``dict(inputs=dict(regions=(B, R_max, D), region_lengths=(B,), tokens=(B, T_max),
        token_lengths=(B,)), data_samples=dict(img_idx=(B,), cap_idx=(B,)))``; padding
        is 0 in both modalities.
    """
    if not batch:
        raise ValueError('vse_collate: got an empty batch.')
    if not all(_is_packed(sample) for sample in batch):
        raise ValueError(
            'vse_collate: samples must be dict(inputs=dict(regions=..., tokens=...), '
            'data_samples=dict(img_idx=..., cap_idx=...)); end the dataset pipeline with '
            'PackVSEInputs.'
        )
    regions = [s['inputs']['regions'] for s in batch]
    tokens = [s['inputs']['tokens'] for s in batch]
    inputs = dict(
        regions=pad_sequence(regions, batch_first=True),
        region_lengths=torch.tensor([len(r) for r in regions], dtype=torch.long),
        tokens=pad_sequence(tokens, batch_first=True),
        token_lengths=torch.tensor([len(t) for t in tokens], dtype=torch.long),
    )
    samples = {
        key: torch.tensor([s['data_samples'][key] for s in batch], dtype=torch.long)
        for key in ('img_idx', 'cap_idx')
    }
    return dict(inputs=inputs, data_samples=samples)


def _is_packed(sample) -> bool:
    return (
        isinstance(sample, dict)
        and isinstance(sample.get('inputs'), dict)
        and {'regions', 'tokens'} <= set(sample['inputs'])
        and isinstance(sample.get('data_samples'), dict)
        and {'img_idx', 'cap_idx'} <= set(sample['data_samples'])
    )
