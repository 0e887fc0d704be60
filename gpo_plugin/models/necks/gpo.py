"""GPO, the Generalized Pooling Operator of VSE∞ (docs/pooling.md#gpo-the-generalized-pooling-operator-vse)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gpo_plugin.ops import (
    length_mask,
    pack_rows,
    packed_positions,
    pad_packed_rows,
    sort_channels_descending,
    weighted_sum_sorted,
)
from gpo_plugin.registry import MODELS

from ..utils.positional_encoding import sinusoid_encoding
from .base_set_pooling import BaseSetPooling
from .pooling_output import PoolingOutput


@MODELS.register_module()
class GPO(BaseSetPooling):
    """Generalized Pooling Operator: a learned weighted sum of per-channel order statistics.

    For a set of N vectors, a bidirectional GRU reads the sinusoidal encodings of
    positions 0..N-1 (directions averaged), a bias-free linear layer scores each
    position, and ``theta = softmax(scores / temperature)`` weights the channel-wise
    descending-sorted features. ``theta`` depends only on (k, N), so it is computed once
    per distinct set size in a batch (and cached in eval mode under ``no_grad``).

    State-dict keys are those of the published VSE∞ checkpoints (``gru.*``,
    ``linear.weight``), so their ``gpool.`` sub-dicts load directly.

    Args:
        d_pe: channels of the positional encoding fed to the GRU. Defaults to 32.
        d_hidden: hidden size of each GRU direction. Defaults to 32.
        temperature: softmax temperature of the scores. Defaults to 0.1.
        gru_impl: how the GRU runs over the distinct set sizes: ``'steps'`` steps each
            direction with ``torch.gru_cell`` (fastest on CPU); ``'packed'`` calls
            ``nn.GRU`` on packed sequences, which uses cuDNN on CUDA. Both compute the same
            function. Defaults to ``'steps'``.
        init_cfg: mmengine initialisation config. Defaults to None.

    Shapes:
        ``pool``: features (B, L, D), lengths (B,) -> pooled (B, D), weights theta (B, N_max)
        over ranks, 0 past each length. ``pool_map``: (B, C, H, W) -> pooled (B, C),
        weights (B, H*W). ``forward``: tuple of (B, C, H, W) -> tuple of (B, C).
        ``pool_weights``: lengths (B,) -> theta (B, N_max) alone.
    """

    weights_over = 'rank'

    def __init__(
        self,
        d_pe: int = 32,
        d_hidden: int = 32,
        temperature: float = 0.1,
        gru_impl: str = 'steps',
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if d_pe % 2:
            raise ValueError(f'GPO: `d_pe` must be even (sin/cos pairs), got {d_pe}.')
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(
                f'GPO: `temperature` must be a finite number > 0, got {temperature} (the '
                'softmax divides the scores by it).'
            )
        if gru_impl not in ('steps', 'packed'):
            raise ValueError(f"GPO: `gru_impl` must be 'steps' or 'packed', got {gru_impl!r}.")
        self.gru_impl = gru_impl
        self.d_pe = d_pe
        self.d_hidden = d_hidden
        self.temperature = temperature
        self.gru = nn.GRU(d_pe, d_hidden, num_layers=1, batch_first=True, bidirectional=True)
        self.linear = nn.Linear(d_hidden, 1, bias=False)
        self._weights_cache: dict[tuple, Tensor] = {}

    def pool_padded(self, features: Tensor, lengths: Tensor) -> PoolingOutput:
        weights = self.pool_weights(lengths)
        pooled = weighted_sum_sorted(sort_channels_descending(features, lengths), weights)
        return PoolingOutput(pooled, weights, 'rank')

    def pool_weights(self, lengths: Tensor) -> Tensor:
        """theta alone: (B,) valid ``torch.long`` lengths -> (B, max(lengths)) weights over
        ranks, 0 past each size; the ``weights`` of :meth:`pool` without any features.
        Generic code reads them from :meth:`pool` instead (``PoolingOutput.weights``)."""
        sizes, which = torch.unique(lengths, return_inverse=True)
        # Weights are always computed in full precision, also under autocast.
        with torch.autocast(device_type=lengths.device.type, enabled=False):
            if self.training or torch.is_grad_enabled():
                self._weights_cache.clear()
                table = self._weights_for_sizes(sizes)
            else:
                table = self._cached_weights_for_sizes(sizes)
        return table[which]

    def _weights_for_sizes(self, sizes: Tensor) -> Tensor:
        """theta for each distinct size: (U,) -> (U, max(sizes)), zero past each size.

        With ``gru_impl='steps'`` the GRU's two directions run step by step with
        ``torch.gru_cell``: the forward direction reads positions 0, 1, ... whatever the size, so one run serves every
        size; only the backward direction (which starts at N-1) runs once per size.
        This is the same function as the bidirectional ``nn.GRU`` over packed
        sequences, and several times cheaper to differentiate on CPU.
        """
        max_size = int(sizes.max())
        encoding = sinusoid_encoding(
            max_size, self.d_pe, device=sizes.device, dtype=self.linear.weight.dtype
        )
        if self.gru_impl == 'packed':
            hidden = self._packed_states(encoding, sizes)
        else:
            hidden = self._stepped_states(encoding, sizes)
        scores = self.linear(hidden).squeeze(-1)
        scores = scores.masked_fill(~length_mask(sizes, max_size), -math.inf)
        return torch.softmax(scores / self.temperature, dim=1)

    def _stepped_states(self, encoding: Tensor, sizes: Tensor) -> Tensor:
        """Directions-averaged GRU states (U, max_size, d_hidden), stepped by hand."""
        max_size = encoding.shape[0]
        forward_states = self._run_direction(encoding.unsqueeze(0), reverse=False)
        # Step t of size N reads position N-1-t; the map is its own inverse, so the same
        # index turns states by step back into states by position (k >= N is masked).
        steps = torch.arange(max_size, device=sizes.device)
        mirrored = (sizes.unsqueeze(1) - 1 - steps).clamp(min=0)  # (U, max_size)
        backward_states = self._run_direction(encoding[mirrored], reverse=True)
        backward_states = backward_states.gather(
            1, mirrored.unsqueeze(-1).expand(-1, -1, self.d_hidden)
        )
        return (forward_states + backward_states) / 2

    def _packed_states(self, encoding: Tensor, sizes: Tensor) -> Tensor:
        """The same states from ``nn.GRU`` over one packed sequence per size (cuDNN on
        CUDA); zero past each size."""
        shape = (sizes.shape[0], encoding.shape[0])  # (U, max_size)
        order = packed_positions(sizes, *shape)
        hidden = self.gru(pack_rows(encoding.expand(*shape, -1), order))[0].data
        forward_states, backward_states = hidden.split(self.d_hidden, dim=-1)
        return pad_packed_rows((forward_states + backward_states) / 2, order.data, *shape)

    def _run_direction(self, inputs: Tensor, reverse: bool) -> Tensor:
        """One direction of ``self.gru`` over (U, T, d_pe) inputs -> (U, T, d_hidden)."""
        suffix = '_reverse' if reverse else ''
        weights = [
            getattr(self.gru, f'{name}_l0{suffix}')
            for name in ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh')
        ]
        state = inputs.new_zeros(inputs.shape[0], self.d_hidden)
        states = []
        for step in range(inputs.shape[1]):
            state = torch.gru_cell(inputs[:, step], state, *weights)
            states.append(state)
        return torch.stack(states, dim=1)

    def _cached_weights_for_sizes(self, sizes: Tensor) -> Tensor:
        device, dtype = sizes.device, self.linear.weight.dtype
        size_list = sizes.tolist()
        missing = [n for n in size_list if (n, device, dtype) not in self._weights_cache]
        if missing:
            fresh = self._weights_for_sizes(torch.tensor(missing, device=device))
            for row, n in zip(fresh, missing, strict=True):
                self._weights_cache[(n, device, dtype)] = row[:n]
        table = sizes.new_zeros((len(size_list), max(size_list)), dtype=dtype)
        for i, n in enumerate(size_list):
            table[i, :n] = self._weights_cache[(n, device, dtype)]
        return table

    def train(self, mode: bool = True) -> GPO:
        self._weights_cache.clear()
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self._weights_cache.clear()
        super()._load_from_state_dict(*args, **kwargs)
