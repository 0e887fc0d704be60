"""A GRU over packed sequences, stepped by hand with a hand-written backward.

:func:`stepped_gru` computes exactly what ``nn.GRU(packed)[0]`` computes (PyTorch's gate
convention, zero initial state, every layer and direction), with the same parameters.
It differs in how the work is laid out, which matters on CPU:

- the input projections of every step (and both directions) are one matrix product
  over the packed rows, and so are their gradients;
- each direction's recurrence is one autograd node (:class:`_Recurrence`) whose backward
  walks the steps once and leaves the recurrent weight gradient to a single product
  ``dgates^T @ h_prev`` over all rows, instead of one small product per step.

The per-step recurrent products ``h @ W_hh^T`` (forward) and ``dgates @ W_hh`` (backward)
are the same as ``nn.GRU``'s. Double backward is not supported (the backward is not
recorded). See docs/benchmarks.md#vse-training-iteration-benchmarksbenchmark_train_steppy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.nn.utils.rnn import PackedSequence


def stepped_gru(
    gru: nn.GRU, packed: PackedSequence, row_index: Tensor | None = None
) -> PackedSequence:
    """``gru(packed)[0]`` computed step by step (same function, same parameters).

    Args:
        gru: the ``nn.GRU`` whose parameters are used (any number of layers, one or two
            directions, with biases, no projection; dropout only in eval mode).
        packed: the input sequences, as ``pack_padded_sequence`` makes them.
        row_index: (N,) long, optional. When given, ``packed.data`` holds only the
            distinct input rows and packed row i is ``packed.data[row_index[i]]``: the
            first layer projects each distinct row once and gathers the projections
            (words repeat across a batch of captions; the same function either way).

    Returns:
        The output PackedSequence of the last layer, (total rows, directions * hidden),
        directions concatenated as ``nn.GRU`` does.
    """
    _check_supported(gru)
    data = packed.data
    batch_sizes = packed.batch_sizes.tolist()
    suffixes = ('', '_reverse') if gru.bidirectional else ('',)
    # Full precision like nn.GRU outside autocast; the recurrence keeps its own buffers.
    with torch.autocast(device_type=data.device.type, enabled=False):
        for layer in range(gru.num_layers):
            names = [f'l{layer}{suffix}' for suffix in suffixes]
            w_ih = torch.cat([getattr(gru, f'weight_ih_{name}') for name in names])
            b_ih = torch.cat([getattr(gru, f'bias_ih_{name}') for name in names])
            # Every step's input projection, both directions, in one product.
            projected = F.linear(data.to(w_ih.dtype), w_ih, b_ih)
            if layer == 0 and row_index is not None:
                projected = projected.index_select(0, row_index)
            outputs = [
                _Recurrence.apply(
                    part,
                    getattr(gru, f'weight_hh_{name}'),
                    getattr(gru, f'bias_hh_{name}'),
                    batch_sizes,
                    name.endswith('_reverse'),
                )
                for part, name in zip(projected.chunk(len(names), dim=1), names, strict=True)
            ]
            data = torch.cat(outputs, dim=1) if len(outputs) > 1 else outputs[0]
    return PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)


def _check_supported(gru: nn.GRU) -> None:
    if not isinstance(gru, nn.GRU):
        raise TypeError(f'stepped_gru: expects an nn.GRU, got {type(gru).__name__}.')
    if not gru.bias:
        raise ValueError('stepped_gru: the GRU must have biases (nn.GRU(..., bias=True)).')
    if gru.dropout and gru.training and gru.num_layers > 1:
        raise ValueError(
            "stepped_gru: dropout between GRU layers is not supported; use gru_impl='packed'."
        )


def _step_rows(batch_sizes: list[int], reverse: bool) -> list[tuple[int, int, int, int]]:
    """Per step, in the order the direction visits them: (first row, rows, first row of
    the previously visited step, rows continuing from it). The first step continues
    nothing (previous first row -1, 0 rows)."""
    offsets = [0]
    for size in batch_sizes[:-1]:
        offsets.append(offsets[-1] + size)
    order = range(len(batch_sizes) - 1, -1, -1) if reverse else range(len(batch_sizes))
    steps, previous, previous_size = [], -1, 0
    for t in order:
        steps.append((offsets[t], batch_sizes[t], previous, min(batch_sizes[t], previous_size)))
        previous, previous_size = offsets[t], batch_sizes[t]
    return steps


class _Recurrence(torch.autograd.Function):
    """One GRU direction over packed rows, given every step's input projection.

    Packed rows of step t are the first ``batch_sizes[t]`` sequences (longest first), so
    a sequence continuing from the previously visited step is the same row index in
    both. The forward direction visits steps 0, 1, ... (sizes shrink: every row
    continues); the reverse direction visits T-1, ..., 0 (sizes grow: rows past the
    previous step's size are sequences starting there, from a zero state).

    Saved per row: the gates r, z, n, the recurrent products ``W_hh h + b_hh`` (the
    backward needs n's part) and the previous state, so the backward recomputes nothing.
    """

    @staticmethod
    def forward(
        ctx, projected: Tensor, w_hh: Tensor, b_hh: Tensor, batch_sizes: list[int], reverse: bool
    ) -> Tensor:
        hidden = w_hh.shape[1]
        steps = _step_rows(batch_sizes, reverse)
        gates = projected.new_empty(projected.shape[0], 3 * hidden)  # r | z | n
        recurrent_all = torch.empty_like(gates)  # W_hh h + b_hh
        previous_states = projected.new_zeros(projected.shape[0], hidden)
        states = projected.new_empty(projected.shape[0], hidden)
        two = 2 * hidden
        for first, size, previous, carried in steps:
            rows = slice(first, first + size)
            h = previous_states[rows]  # zero for sequences starting at this step
            h[:carried] = states[previous : previous + carried]
            # W_hh h + b_hh, (size, 3H); rows starting here (h = 0) only need b_hh.
            recurrent = recurrent_all[rows]
            if carried < size:
                recurrent[carried:] = b_hh
            if carried:
                recurrent[:carried] = torch.addmm(b_hh, h[:carried], w_hh.t())
            gate = gates[rows]
            torch.add(projected[rows, :two], recurrent[:, :two], out=gate[:, :two])
            gate[:, :two].sigmoid_()
            reset, update, new = gate.split(hidden, dim=1)
            torch.addcmul(projected[rows, two:], reset, recurrent[:, two:], out=new)
            new.tanh_()
            # h' = (1 - z) * n + z * h = n + z * (h - n)
            torch.addcmul(new, update, h - new, out=states[rows])
        ctx.save_for_backward(gates, recurrent_all, previous_states, w_hh)
        ctx.steps = steps
        return states

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_states: Tensor) -> tuple[Tensor, Tensor, Tensor, None, None]:
        gates, recurrent_all, previous_states, w_hh = ctx.saved_tensors
        hidden = w_hh.shape[1]
        two = 2 * hidden
        grad_projected = torch.empty_like(gates)  # d(pre-activations): r | z | n
        grad_recurrent = torch.empty_like(gates)  # the same, n's scaled by r
        # carry[:k]: gradient reaching the states of the step visited next in this
        # backward walk (the previous one in the forward walk), for its k continuing
        # rows; rows it does not continue are never written, so they read zero.
        carry = grad_states.new_zeros(max(size for _, size, _, _ in ctx.steps), hidden)
        w_hh_t = w_hh.t().contiguous()  # d_recurrent @ W_hh = d_recurrent @ (W_hh^T)^T
        for first, size, _, carried in reversed(ctx.steps):
            rows = slice(first, first + size)
            grad_h = grad_states[rows] + carry[:size]
            reset, update, new = gates[rows].split(hidden, dim=1)
            d_reset, d_update, d_new = grad_projected[rows].split(hidden, dim=1)
            # n = tanh(i_n + r * (W_hn h + b_hn)), h' = n + z * (h - n)
            torch.mul(grad_h * (1 - update), 1 - new * new, out=d_new)
            torch.mul(grad_h * (previous_states[rows] - new), update * (1 - update), out=d_update)
            torch.mul(d_new * recurrent_all[rows, two:], reset * (1 - reset), out=d_reset)
            d_recurrent = grad_recurrent[rows]
            d_recurrent[:, :two] = grad_projected[rows, :two]
            torch.mul(d_new, reset, out=d_recurrent[:, two:])
            # Only continuing rows pass gradient on; the others started from zero.
            if carried:
                torch.add(
                    d_recurrent[:carried] @ w_hh_t.t(),
                    grad_h[:carried] * update[:carried],
                    out=carry[:carried],
                )
        # The recurrent weights' gradients: one product over every row, not one per step
        # (rows with a zero previous state add nothing, but skipping them costs a gather).
        grad_w_hh = grad_recurrent.t() @ previous_states
        return grad_projected, grad_w_hh, grad_recurrent.sum(0), None, None
