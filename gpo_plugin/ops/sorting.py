"""Per-channel descending sort of padded sets as one autograd node, with a sorting network for
short sets on CPU (the order statistics GPO and K-max pooling weight)."""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from .masks import length_mask


def sort_channels_descending(features: Tensor, lengths: Tensor, top: int | None = None) -> Tensor:
    """Sort every channel of each set independently, largest first.

    Args:
        features: (B, L, D) padded sets.
        lengths: (B,) valid sizes (already checked).
        top: keep only the ``top`` largest values per channel (a cheaper top-k);
            ``None`` keeps all.

    Returns:
        (B, D, K) with K = max(lengths) (or ``min(top, max(lengths))``): entry [b, d, k]
        is the k-th largest value of channel d in set b, and exactly 0 for
        k >= lengths[b]. The set axis is last so the sort runs along contiguous memory.
    """
    return _SortedChannels.apply(features, lengths, top)


class _SortedChannels(torch.autograd.Function):
    """:func:`sort_channels_descending` as one autograd node.

    Sorting selects entries of each row, so the gradient is the upstream gradient
    scattered back to where the values came from. Doing the layout change, padding
    and scatter in one node avoids the generic ``sort`` backward and two masked-fill
    backward passes (together about half the time of the sort itself on CPU). The
    backward is built from ops autograd can record, so double backward still works.

    On CPU, short sets (2 <= N <= :data:`NETWORK_MAX_SET`, B * D >= 8192) are sorted by a sorting
    network (:func:`network_sort`) on an (N, B, D) copy (each rank one contiguous row),
    which is several times faster than ``torch.sort`` over B * D rows of N values; longer sets
    and other devices use ``torch.sort`` on the (B, D, N) layout.
    """

    @staticmethod
    def forward(ctx, features: Tensor, lengths: Tensor, top: int | None) -> Tensor:
        max_len = int(lengths.max())
        kept = max_len if top is None else min(top, max_len)
        padded = bool((lengths < max_len).any())
        # Padding must sort last whatever the feature scale: -inf, not a sentinel.
        # In place only on our own copy, never on the caller's memory.
        if use_sorting_network(features, max_len):
            # (N_max, B, D): each rank a contiguous row, the layout the network is fast on.
            channels = features[:, :max_len].transpose(0, 1).contiguous()
            if padded:
                _fill_past_lengths(channels, lengths, -math.inf)
            values, indices = network_sort(channels)
            values = values[:kept]
            _fill_past_lengths(values, lengths, 0.0)  # ranks past each size are zeros
            # Indices as (B, K, D) int64 for the backward scatter; values as a (B, D, K) view.
            indices = _int64_batch_slices(indices[:kept].transpose(0, 1))
            values = values.permute(1, 2, 0)
            ctx.set_axis = 1
        else:
            view = features[:, :max_len].transpose(1, 2)
            channels = view.contiguous()  # (B, D, N_max)
            if padded:
                padding = ~length_mask(lengths, max_len).unsqueeze(1)
                if channels is view:
                    channels = channels.masked_fill(padding, -math.inf)
                else:
                    channels.masked_fill_(padding, -math.inf)
            if kept == max_len:
                values, indices = channels.sort(dim=-1, descending=True)
            else:
                values, indices = channels.topk(kept, dim=-1, largest=True, sorted=True)
            indices = [indices]
            ctx.set_axis = 2
        if ctx.set_axis == 2 and bool((lengths < kept).any()):
            values.masked_fill_(~length_mask(lengths, kept).unsqueeze(1), 0.0)
        ctx.save_for_backward(lengths, *indices)
        ctx.features_shape = features.shape
        return values

    @staticmethod
    def backward(ctx, grad_values: Tensor) -> tuple[Tensor, None, None]:
        lengths, *indices = ctx.saved_tensors
        batch, _, dim = ctx.features_shape
        max_len = int(lengths.max())
        kept = grad_values.shape[-1]
        full = kept == max_len  # a full sort: the scatter writes every entry
        if ctx.set_axis == 1:  # indices (B, K, D) from the sorting network
            # Contiguous already when the gradient comes from weighted_sum_sorted (rank_weighted_sum.py).
            source = grad_values.transpose(1, 2).contiguous()
            if full:
                grad_channels = grad_values.new_empty(batch, max_len, dim)
            else:
                grad_channels = grad_values.new_zeros(batch, max_len, dim)
            start = 0
            for part in indices:
                stop = start + part.shape[0]
                grad_channels[start:stop].scatter_(1, part, source[start:stop])
                start = stop
            # Ranks past a set's size are constant zeros and came from its padding (-inf sorts
            # last): zeroing the padding positions after the scatter drops their gradient.
            _fill_past_lengths(grad_channels.transpose(0, 1), lengths, 0.0)
        else:  # indices (B, D, K) from torch.sort / topk
            # Ranks past a set's size are constant zeros: no gradient flows through them.
            if bool((lengths < kept).any()):
                grad_values = grad_values.masked_fill(~length_mask(lengths, kept).unsqueeze(1), 0.0)
            if full:
                grad_channels = grad_values.new_empty(batch, dim, max_len)
            else:
                grad_channels = grad_values.new_zeros(batch, dim, max_len)
            grad_channels = grad_channels.scatter_(-1, indices[0], grad_values).transpose(1, 2)
        if max_len == ctx.features_shape[1]:
            return grad_channels.contiguous(), None, None
        grad = grad_values.new_zeros(ctx.features_shape)
        grad[:, :max_len] = grad_channels
        return grad, None, None


def _fill_past_lengths(ranks_first: Tensor, lengths: Tensor, value: float) -> None:
    """Set entries [k, b, ...] with k >= lengths[b] of an (N, B, ...) tensor, in place: one
    ``index_fill_`` per distinct length, touching only those entries (a broadcast masked fill
    visits all of them)."""
    size = ranks_first.shape[0]
    for length in torch.unique(lengths[lengths < size]).tolist():
        ranks_first[length:].index_fill_(1, (lengths == length).nonzero()[:, 0], value)


# glibc serves blocks over 32 MiB by fresh mmap on every call, and faulting those pages in
# made a (128, 36, 1024) int64 index copy ~10x slower than the conversion itself (measured).
MAX_SLICE_BYTES = 16 * 2**20


def _int64_batch_slices(indices: Tensor) -> list[Tensor]:
    """(B, ...) small integer indices as contiguous int64 copies of batch slices, each under
    :data:`MAX_SLICE_BYTES` (memory the allocator reuses warm)."""
    per_sample = indices[0].numel() * 8
    step = max(1, MAX_SLICE_BYTES // per_sample)
    return [
        torch.empty(part.shape, dtype=torch.long, device=part.device).copy_(part)
        for part in indices.split(step)
    ]


# Measured on CPU (one thread): the network beats torch.sort from about 8K columns
# (B * D) up, at least up to N = 64 (543 comparators); below, per-op overhead dominates.
NETWORK_MAX_SET = 64
NETWORK_MIN_COLUMNS = 8192


def use_sorting_network(features: Tensor, set_len: int) -> bool:
    """Whether :func:`sort_channels_descending` sorts ``set_len`` positions with the network."""
    columns = features.shape[0] * features.shape[2]
    return (
        features.device.type == 'cpu'
        and 2 <= set_len <= NETWORK_MAX_SET
        and columns >= NETWORK_MIN_COLUMNS
    )


@functools.cache
def sorting_network(size: int) -> tuple[tuple[int, int], ...]:
    """Comparators (i, j), i < j, of Batcher's odd-even merge sort for ``size`` inputs.

    Built for the next power of two and pruned to pairs inside ``size``: positions past
    ``size`` act as -inf, which sorts last, so every comparator touching them is a no-op.
    """
    width = 1 << max(size - 1, 0).bit_length()
    pairs = []
    block = 1
    while block < width:
        step = block
        while step >= 1:
            for start in range(step % block, width - step, 2 * step):
                for offset in range(min(step, width - start - step)):
                    low, high = offset + start, offset + start + step
                    if low // (2 * block) == high // (2 * block) and high < size:
                        pairs.append((low, high))
            step //= 2
        block *= 2
    return tuple(pairs)


def network_sort(sets: Tensor) -> tuple[Tensor, Tensor]:
    """Sort (N, M...) along dim 0, largest first, with a sorting network, in place.

    Each comparator is a handful of elementwise ops on two contiguous rows, so the work
    is vectorised over all of M at once instead of sorting M short rows one by one.
    ``sets`` must be contiguous and is overwritten (pass a copy). Returns ``sets`` and,
    as uint8 (N <= 256), the row each value came from. Ties may be ordered differently
    from ``torch.sort``; the values are the same.
    """
    size = sets.shape[0]
    if size > 256:
        raise ValueError(f'network_sort: at most 256 positions, got {size}.')
    if not sets.is_contiguous():
        raise ValueError('network_sort: `sets` must be contiguous (it is sorted in place).')
    source = torch.arange(size, dtype=torch.uint8, device=sets.device)
    source = source.view(size, *[1] * (sets.dim() - 1)).expand_as(sets).contiguous()
    rows, places = sets.unbind(0), source.unbind(0)
    # Scratch rows reused by every comparator. The comparison writes int8 0/1: on CPU that
    # kernel is vectorised and about 2.5x faster than the bool one (measured).
    low, delta = torch.empty_like(rows[0]), torch.empty_like(places[0])
    swap = torch.empty(rows[0].shape, dtype=torch.int8, device=sets.device)
    swap_bytes = swap.view(torch.uint8)
    for i, j in sorting_network(size):
        a, b = rows[i], rows[j]
        torch.lt(a, b, out=swap)
        torch.minimum(a, b, out=low)
        torch.maximum(a, b, out=a)
        b.copy_(low)
        # Index exchange in uint8 arithmetic (wraps mod 256, so exact): cheaper on CPU
        # than torch.where.
        torch.sub(places[j], places[i], out=delta).mul_(swap_bytes)
        places[i].add_(delta)
        places[j].sub_(delta)
    return sets, source
