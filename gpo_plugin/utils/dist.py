"""Collectives for losses over the global batch of a multi-process (DDP) run."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """Processes in the default group; 1 when torch.distributed is not initialised."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` of every rank along dim 0, in rank order, keeping the autograd graph.

    Uses ``torch.distributed.nn.functional.all_gather``, whose backward sums the gradient
    each rank computes for every slot and returns its own slot to each rank. So when every
    rank evaluates the same loss L on the gathered batch, rank r receives
    ``world_size * dL/dx_r``, and DDP's gradient averaging then gives exactly the
    single-process gradient of L over the concatenated batch. Ranks may hold different
    numbers of rows (they are padded for the collective and trimmed after). A no-op
    without an initialised process group.

    Shapes:
        x (B_r, ...) on rank r -> (sum_r B_r, ...) on every rank.
    """
    size = world_size()
    if size == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    counts = torch.tensor([x.shape[0]], device=x.device)
    all_counts = [torch.zeros_like(counts) for _ in range(size)]
    dist.all_gather(all_counts, counts)
    rows = [int(c) for c in all_counts]
    padded = x
    if max(rows) != x.shape[0]:
        padded = torch.cat([x, x.new_zeros(max(rows) - x.shape[0], *x.shape[1:])])
    parts = all_gather(padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, rows, strict=True)])
