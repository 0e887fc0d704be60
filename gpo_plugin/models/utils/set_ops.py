"""Pure functions on padded sets of feature vectors (B, L, D) with lengths (B,)."""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence

import torch
from torch import Tensor

LengthsLike = Tensor | Sequence[int] | None


def check_set_input(features: Tensor, lengths: LengthsLike, caller: str) -> Tensor:
    """Validate a padded set batch and return its lengths as a long tensor.

    Args:
        features: (B, L, D) set features; positions >= lengths[b] are padding.
        lengths: (B,) integer set sizes, 1 <= lengths[b] <= L. ``None`` means every
            set is full (all L positions valid).
        caller: name used in error messages, e.g. ``'GPO.pool'``.

    Returns:
        (B,) ``torch.long`` lengths on ``features.device``.
    """
    if not isinstance(features, Tensor):
        raise TypeError(
            f'{caller}: `features` must be a torch.Tensor of shape (B, L, D), '
            f'got {type(features).__name__}.'
        )
    if features.dim() != 3:
        raise ValueError(
            f'{caller}: `features` must have shape (B, L, D) (3 dims), '
            f'got shape {tuple(features.shape)}.'
        )
    if not features.is_floating_point():
        raise TypeError(
            f'{caller}: `features` must be a floating-point tensor, got {features.dtype}.'
        )
    batch, set_len, _ = features.shape
    shape = f'features {tuple(features.shape)}'
    return check_lengths(lengths, batch, set_len, caller, device=features.device, what=shape)


def check_lengths(
    lengths: LengthsLike,
    batch: int,
    set_len: int,
    caller: str,
    device=None,
    what: str = 'the padded batch',
) -> Tensor:
    """Validate the sizes of a batch of ``batch`` padded sets of ``set_len`` positions.

    Returns (B,) ``torch.long`` lengths on ``device``; ``None`` means every set is full.
    Each call syncs device to host once: models check a set where it enters and then
    trust it (``BaseSetPooling.pool_padded``).
    """
    if batch == 0:
        raise ValueError(f'{caller}: the batch holds no samples (B = 0).')
    if lengths is None:
        if set_len < 1:
            raise ValueError(
                f'{caller}: every set needs at least one element, got lengths[0] = 0 '
                f'(an empty set axis in {what}).'
            )
        return torch.full((batch,), set_len, dtype=torch.long, device=device)
    lengths = _as_long_tensor(lengths, caller).to(device)
    if lengths.dim() != 1 or lengths.numel() != batch:
        raise ValueError(
            f'{caller}: `lengths` must have shape (B,) = ({batch},) to match {what}, '
            f'got shape {tuple(lengths.shape)}.'
        )
    smallest, largest = torch.aminmax(lengths)
    smallest, largest = int(smallest), int(largest)
    if smallest < 1:
        index = int(torch.argmin(lengths))
        raise ValueError(
            f'{caller}: every set needs at least one element, got lengths[{index}] = '
            f'{smallest}. Drop empty samples or give them at least one feature.'
        )
    if largest > set_len:
        index = int(torch.argmax(lengths))
        raise ValueError(
            f'{caller}: lengths[{index}] = {largest} exceeds the set axis of '
            f'{what} (L = {set_len}).'
        )
    return lengths


def check_token_lengths(tokens: Tensor, lengths: LengthsLike, caller: str) -> Tensor:
    """Validate (B, T) integer token ids and their lengths; returns the lengths as
    :func:`check_lengths` does."""
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.is_floating_point():
        shape = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f'{caller}: tokens must be a (B, T) integer tensor, got {shape}.')
    batch, set_len = tokens.shape
    shape = f'tokens {tuple(tokens.shape)}'
    return check_lengths(lengths, batch, set_len, caller, device=tokens.device, what=shape)


def check_feature_map(feature_map: Tensor, caller: str) -> None:
    """Raise a ValueError naming ``caller`` unless ``feature_map`` is a (B, C, H, W) tensor."""
    if not isinstance(feature_map, Tensor) or feature_map.dim() != 4:
        shape = (
            tuple(feature_map.shape)
            if isinstance(feature_map, Tensor)
            else type(feature_map).__name__
        )
        raise ValueError(f'{caller}: backbone outputs must be (B, C, H, W) maps, got {shape}.')


def _as_long_tensor(lengths: Tensor | Sequence[int], caller: str) -> Tensor:
    if isinstance(lengths, Tensor):
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise TypeError(
                f'{caller}: `lengths` must hold integers, got dtype {lengths.dtype}; '
                'pass e.g. `lengths.long()` after checking the values are whole.'
            )
        return lengths.long()
    integers = []
    for value in lengths:
        try:
            if isinstance(value, bool):
                raise TypeError
            integers.append(operator.index(value))
        except TypeError:
            raise TypeError(
                f'{caller}: `lengths` must hold integers, got {value!r} ({type(value).__name__}).'
            ) from None
    return torch.tensor(integers, dtype=torch.long)


def length_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B, max_len) boolean mask, True at valid positions k < lengths[b]."""
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


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
            # Contiguous already when the gradient comes from weighted_sum_sorted.
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
