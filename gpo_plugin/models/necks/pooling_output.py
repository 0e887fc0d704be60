"""What every pooler returns: the pooled vectors and, when it has them, weights and attributes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

WeightsOver = Literal['rank', 'position'] | None
WEIGHTS_OVER = ('rank', 'position', None)


@dataclass(frozen=True)
class PoolingOutput:
    """The result of :meth:`BaseSetPooling.pool` and :meth:`BaseSetPooling.pool_map`.

    Args:
        pooled: (B, D) pooled vectors.
        weights: how much each element contributed, or ``None`` for poolers that are not a
            weighted sum (GeM). Its meaning is given by ``weights_over``.
        weights_over: ``'rank'``: ``weights[b, k]`` multiplies the k-th largest value of every
            channel (GPO, max, K-max, average); shape (B, N_max) for sets and (B, H*W) for
            maps. ``'position'``: ``weights[b, j]`` multiplies the j-th set element (GSP);
            shape (B, N) for sets and (B, H, W) for maps. ``None`` when ``weights`` is.
            Weights are 0 past each set's length.
        attributes: (B, m) attribute vectors (GSP: the share of transported mass that
            reached each of the m prototypes; each row sums to 1), for the zero-shot loss;
            ``None`` for poolers without them.
    """

    pooled: Tensor
    weights: Tensor | None = None
    weights_over: WeightsOver = None
    attributes: Tensor | None = None

    def __post_init__(self) -> None:
        if self.weights_over not in WEIGHTS_OVER:
            raise ValueError(
                f"PoolingOutput: `weights_over` must be 'rank', 'position' or None, got "
                f'{self.weights_over!r}.'
            )
        if (self.weights is None) != (self.weights_over is None):
            raise ValueError(
                'PoolingOutput: give `weights` and `weights_over` together (both or neither); '
                f'got weights_over={self.weights_over!r} with weights '
                f'{"None" if self.weights is None else tuple(self.weights.shape)}.'
            )
