"""Sinusoidal positional encoding (the one VSE∞'s GPO reads set sizes through)."""

from __future__ import annotations

import torch
from torch import Tensor


def sinusoid_encoding(
    num_positions: int, channels: int, *, device=None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """(num_positions, channels) sinusoidal encoding of positions 0..num_positions-1.

    Channel 2j holds sin(k * 10000^(-2j/channels)), channel 2j+1 the cosine of the
    same angle (the transformer encoding that VSE∞ feeds its GPO with).
    """
    if channels % 2:
        raise ValueError(f'sinusoid_encoding: `channels` must be even, got {channels}.')
    position = torch.arange(num_positions, device=device, dtype=torch.float64).unsqueeze(1)
    rates = torch.pow(
        10000.0, -torch.arange(0, channels, 2, device=device, dtype=torch.float64) / channels
    )
    angle = position * rates
    encoding = torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(1)
    return encoding.to(dtype)
