"""GPO written sample by sample, literally as docs/pooling.md#gpo-the-generalized-pooling-operator-vse states it."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from gpo_plugin.models.necks.gpo import GPO
from gpo_plugin.models.utils import sinusoid_encoding


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


def batched_reference_gpo(gpo: GPO, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """GPO as VSE∞'s code computes it: the BiGRU over every sample of the batch (packed
    sequences, one per sample), features sorted along the set axis (dim 1).

    Padding sorts last with -inf rather than VSE∞'s -10000 sentinel, so the result is
    right for any feature scale. Returns pooled (B, D), weights (B, max(lengths), 1).
    """
    max_len = int(lengths.max())
    batch = features.shape[0]
    dtype = gpo.linear.weight.dtype
    encoding = sinusoid_encoding(max_len, gpo.d_pe, device=features.device, dtype=dtype)
    packed = pack_padded_sequence(
        encoding.expand(batch, -1, -1), lengths.cpu(), batch_first=True, enforce_sorted=False
    )
    hidden, _ = pad_packed_sequence(gpo.gru(packed)[0], batch_first=True, total_length=max_len)
    forward_dir, backward_dir = hidden.split(gpo.d_hidden, dim=-1)
    scores = gpo.linear((forward_dir + backward_dir) / 2)  # (B, max_len, 1)
    valid = (torch.arange(max_len, device=features.device) < lengths.unsqueeze(1)).unsqueeze(-1)
    weights = torch.softmax(scores.masked_fill(~valid, -math.inf) / gpo.temperature, dim=1)
    ordered = features[:, :max_len].masked_fill(~valid, -math.inf).sort(dim=1, descending=True)
    ordered = ordered.values.masked_fill(~valid, 0.0)
    return (ordered * weights.to(ordered.dtype)).sum(dim=1), weights


def published_gpo(gpo: GPO, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """GPO step by step as the published VSE∞ class computes it (the speed baseline).

    Per call: the positional encodings of max(lengths) positions, repeated over the batch
    and zeroed past each length; the BiGRU over them as packed sequences; directions
    averaged; scores of padded positions set to -10000 before the softmax; features
    padded with -10000, sorted along the set axis (dim 1), padding zeroed; a weighted sum.
    Equal to GPO whenever every feature is above -10000. Returns pooled (B, D) and the
    weights (B, max(lengths), 1).
    """
    max_len = int(lengths.max())
    batch = lengths.shape[0]
    dtype = gpo.linear.weight.dtype
    encoding = sinusoid_encoding(max_len, gpo.d_pe, dtype=dtype)
    pes = encoding.unsqueeze(0).repeat(batch, 1, 1).to(features.device)
    mask = torch.arange(max_len, device=features.device).expand(batch, max_len)
    mask = (mask < lengths.long().unsqueeze(1)).unsqueeze(-1)
    pes = pes.masked_fill(mask == 0, 0)
    packed = pack_padded_sequence(pes, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = gpo.gru(packed)
    out_emb, _ = pad_packed_sequence(out, batch_first=True)
    half = out_emb.size(2) // 2
    out_emb = (out_emb[:, :, :half] + out_emb[:, :, half:]) / 2
    scores = gpo.linear(out_emb)
    scores[torch.where(mask == 0)] = -10000
    weights = torch.softmax(scores / gpo.temperature, 1)
    features = features[:, :max_len, :]
    ordered = features.masked_fill(mask == 0, -10000).sort(dim=1, descending=True)[0]
    ordered = ordered.masked_fill(mask == 0, 0)
    return (ordered * weights).sum(1), weights
