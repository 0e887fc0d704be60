"""Pure functions on padded sets of feature vectors (B, L, D) with lengths (B,)."""

from __future__ import annotations

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
    trust it (``BaseSetPooling.pool_checked``).
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
    """

    @staticmethod
    def forward(ctx, features: Tensor, lengths: Tensor, top: int | None) -> Tensor:
        max_len = int(lengths.max())
        kept = max_len if top is None else min(top, max_len)
        view = features[:, :max_len].transpose(1, 2)
        channels = view.contiguous()  # (B, D, N_max)
        if bool((lengths < max_len).any()):
            # Padding must sort last whatever the feature scale: -inf, not a sentinel.
            # In place only on our own copy, never on the caller's memory.
            padding = ~length_mask(lengths, max_len).unsqueeze(1)
            if channels is view:
                channels = channels.masked_fill(padding, -math.inf)
            else:
                channels.masked_fill_(padding, -math.inf)
        if kept == max_len:
            values, indices = channels.sort(dim=-1, descending=True)
        else:
            values, indices = channels.topk(kept, dim=-1, largest=True, sorted=True)
        if bool((lengths < kept).any()):
            values.masked_fill_(~length_mask(lengths, kept).unsqueeze(1), 0.0)
        ctx.save_for_backward(indices, lengths)
        ctx.features_shape = features.shape
        return values

    @staticmethod
    def backward(ctx, grad_values: Tensor) -> tuple[Tensor, None, None]:
        indices, lengths = ctx.saved_tensors
        batch, _, dim = ctx.features_shape
        max_len = int(lengths.max())
        kept = grad_values.shape[-1]
        if bool((lengths < kept).any()):
            # Ranks past a set's size are constant zeros: no gradient flows through them.
            grad_values = grad_values.masked_fill(~length_mask(lengths, kept).unsqueeze(1), 0.0)
        if kept == max_len:  # a full sort: the scatter writes every entry
            grad_channels = grad_values.new_empty(batch, dim, max_len)
        else:
            grad_channels = grad_values.new_zeros(batch, dim, max_len)
        grad_channels = grad_channels.scatter_(-1, indices, grad_values).transpose(1, 2)
        if max_len == ctx.features_shape[1]:
            return grad_channels.contiguous(), None, None
        grad = grad_values.new_zeros(ctx.features_shape)
        grad[:, :max_len] = grad_channels
        return grad, None, None


def weighted_sum_sorted(ordered: Tensor, weights: Tensor) -> Tensor:
    """Pool sorted channels (B, D, N) with per-rank weights (B, N) into (B, D)."""
    return torch.bmm(ordered, weights.to(ordered.dtype).unsqueeze(-1)).squeeze(-1)


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
