"""GPO written sample by sample, literally as DESIGN §3 states it."""

from __future__ import annotations

import torch
from torch import Tensor

from gpo_plugin.models.necks.gpo import GPO
from gpo_plugin.models.utils.set_ops import sinusoid_encoding


def per_sample_gpo_weights(gpo: GPO, size: int) -> Tensor:
    """theta (size,) from the BiGRU run over this one size, directions averaged."""
    dtype = gpo.linear.weight.dtype
    encoding = sinusoid_encoding(size, gpo.d_pe, device=gpo.linear.weight.device, dtype=dtype)
    hidden, _ = gpo.gru(encoding.unsqueeze(0))
    forward_dir, backward_dir = hidden[0].split(gpo.d_hidden, dim=-1)
    scores = gpo.linear((forward_dir + backward_dir) / 2).squeeze(-1)
    return torch.softmax(scores / gpo.temperature, dim=0)


def per_sample_gpo(gpo: GPO, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Pool each sample on its own: BiGRU per sample, sort along the set axis.

    Returns pooled (B, D) and weights (B, max(lengths), 1), like ``GPO.pool``.
    """
    max_len = int(lengths.max())
    pooled, weights = [], []
    for sample, size in zip(features, lengths.tolist(), strict=True):
        theta = per_sample_gpo_weights(gpo, size)
        ordered = sample[:size].sort(dim=0, descending=True).values  # (size, D)
        pooled.append(theta.to(ordered.dtype) @ ordered)
        weights.append(torch.nn.functional.pad(theta, (0, max_len - size)))
    return torch.stack(pooled), torch.stack(weights).unsqueeze(-1)
