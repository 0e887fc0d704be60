"""Weighted sum over ranks of sorted channels, with a backward suited to the sorting network's
memory layout."""

from __future__ import annotations

import torch
from torch import Tensor


def weighted_sum_sorted(ordered: Tensor, weights: Tensor) -> Tensor:
    """Pool sorted channels (B, D, N) with per-rank weights (B, N) into (B, D)."""
    weights = weights.to(ordered.dtype)
    if ordered.stride(1) == 1 and ordered.shape[1] > 1:  # network_sort's (N, B, D) memory
        return _RankWeightedSum.apply(ordered, weights)
    return torch.bmm(ordered, weights.unsqueeze(-1)).squeeze(-1)


class _RankWeightedSum(torch.autograd.Function):
    """:func:`weighted_sum_sorted` on the sorting network's (N, B, D) memory.

    The forward reads the ranks in place (one batched vector-matrix product). The backward
    writes the feature gradient, weights[b, k] * grad[b, d], as one broadcast product straight
    into the (B, N, D) layout the sort's backward scatters from, and the weight gradient as one
    batched product: about a quarter of the time of ``bmm``'s generic backward at
    (128, 1024, 36) on CPU (measured). Built from recordable ops: double backward works.
    """

    @staticmethod
    def forward(ctx, ordered: Tensor, weights: Tensor) -> Tensor:
        ctx.save_for_backward(ordered, weights)
        return torch.bmm(weights.unsqueeze(1), ordered.transpose(1, 2)).squeeze(1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        ordered, weights = ctx.saved_tensors
        grad = grad.to(ordered.dtype)  # bfloat16 under CPU autocast, whose bmm ran in it
        grad_ordered = grad_weights = None
        if ctx.needs_input_grad[0]:
            grad_ordered = (weights.unsqueeze(-1) * grad.unsqueeze(1)).transpose(1, 2)
        if ctx.needs_input_grad[1]:
            grad_weights = torch.bmm(grad.unsqueeze(1), ordered).squeeze(1)
        return grad_ordered, grad_weights
