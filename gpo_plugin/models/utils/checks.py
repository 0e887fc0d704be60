"""Input checks of the models: padded sets (B, L, D) with lengths (B,), token ids, feature maps.

Each check names the caller, the argument, the shape it got and what it needs, so bad input
fails where it enters a model instead of deep inside torch.
"""

from __future__ import annotations

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
