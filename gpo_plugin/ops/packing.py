"""Packing padded sequences for a GRU and padding its output again, with linear backwards.

``pad_packed_sequence`` writes the padded output one run of equal batch sizes at a time, and
autograd differentiates each of those slice writes by copying the *whole* padded gradient:
one (B, T, C) copy per run, at batch 128, 32 words and 2048 channels about 24 copies of
32 MiB, a third of a CPU training step (docs/benchmarks.md); ``pack_padded_sequence``'s
backward zero-fills the padded gradient and copies it back run by run as well. Here the
packed order is found on integer positions (nothing to differentiate); rows are packed with
one ``index_select`` and padded again with one ``index_copy``, each the other's backward.
The rows are ordered exactly as ``pack_padded_sequence`` orders them
(``enforce_sorted=False``), and every value and gradient is the same bit for bit: both only
move numbers."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence


def packed_positions(lengths: Tensor, batch: int, steps: int) -> PackedSequence:
    """Where each row of a packed batch sits in the flattened padded batch.

    Args:
        lengths: (B,) valid lengths, 1 <= length <= T.
        batch: B.
        steps: T, the padded length.

    Returns:
        A PackedSequence whose data are (N,) long indices into a (B * T) flattening of the
        padded batch (N = lengths.sum()), in ``pack_padded_sequence``'s order
        (``enforce_sorted=False``); its batch sizes and sort order come with it.
    """
    flat = torch.arange(batch * steps, device=lengths.device).view(batch, steps)
    return pack_padded_sequence(flat, lengths.cpu(), batch_first=True, enforce_sorted=False)


def pack_rows(padded: Tensor, order: PackedSequence) -> PackedSequence:
    """``pack_padded_sequence(padded, ...)`` for a (B, T, C) batch, as one gather.

    Args:
        padded: (B, T, C) batch-first rows.
        order: :func:`packed_positions` of the same lengths and shape.
    """
    rows = padded.flatten(0, 1).index_select(0, order.data)
    return PackedSequence(rows, order.batch_sizes, order.sorted_indices, order.unsorted_indices)


def pad_packed_rows(rows: Tensor, positions: Tensor, batch: int, steps: int) -> Tensor:
    """Packed rows back to the padded layout: (N, C) -> (batch, steps, C), zero elsewhere.

    Args:
        rows: (N, C) one row per packed position.
        positions: (N,) where each row goes in the flattened (batch * steps) layout: the
            data of :func:`packed_positions`.
        batch: B.
        steps: T.
    """
    padded = rows.new_zeros(batch * steps, rows.shape[1])
    return padded.index_copy(0, positions, rows).view(batch, steps, rows.shape[1])
