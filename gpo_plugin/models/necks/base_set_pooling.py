"""Base class of every pooler: one method, ``pool_padded``, to implement."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Sequence
from dataclasses import replace
from typing import ClassVar

import torch
from mmengine.model import BaseModule
from torch import Tensor

from ..utils.checks import LengthsLike, check_feature_map, check_set_input
from .pooling_output import PoolingOutput, WeightsOver


class BaseSetPooling(BaseModule, metaclass=ABCMeta):
    """A neck that pools a set of feature vectors into one vector.

    The contract (docs/pooling.md#the-pooling-contract):

    - :meth:`pool` checks padded sets (B, L, D) with ``lengths`` (B,) and returns a
      :class:`PoolingOutput`; :meth:`pool_map` does the same for (B, C, H, W) maps, whose
      H*W grid vectors form the set.
    - :meth:`forward` is the mmpretrain neck call: a tuple of maps -> a tuple of (B, C)
      vectors, one map -> (B, C), a (B, L, D) set (+ ``lengths``) -> (B, D).
    - Subclasses implement one method, :meth:`pool_padded`, and declare what their output
      holds: ``weights_over`` (what ``PoolingOutput.weights`` are over) and
      ``gives_attributes`` (whether ``PoolingOutput.attributes`` is set), so that models can
      check a configuration when they are built. Poolers with a native map implementation may
      also override :meth:`pool_grid` (optional).

    Args:
        init_cfg: mmengine initialisation config. Defaults to None.
    """

    #: What ``PoolingOutput.weights`` of this pooler are over: 'rank', 'position' or None.
    weights_over: ClassVar[WeightsOver] = None
    #: Whether ``PoolingOutput.attributes`` holds attribute vectors (GSP) rather than None.
    gives_attributes: ClassVar[bool] = False

    @property
    def awaits_data_init(self) -> bool:
        """True while the pooler still initialises itself from the first training batches
        that pass through it in training mode (GSP's k-center prototypes); False otherwise."""
        return False

    def pool(self, features: Tensor, lengths: LengthsLike = None) -> PoolingOutput:
        """Check and pool padded sets.

        Args:
            features: (B, L, D) float sets; positions >= lengths[b] are ignored.
            lengths: (B,) integer sizes in [1, L] (a tensor, list or array); ``None``
                means all L are valid.

        Returns:
            :class:`PoolingOutput` with pooled (B, D).
        """
        lengths = check_set_input(features, lengths, f'{type(self).__name__}.pool')
        return self.pool_padded(features, lengths)

    @abstractmethod
    def pool_padded(self, features: Tensor, lengths: Tensor) -> PoolingOutput:
        """The pooling itself, on padded sets that are already valid.

        Implemented by every pooler; also public for models that validate a set once where
        it enters (``check_set_input``, one device-to-host sync) and then pool without
        checking again, as the VSE∞ encoders do.

        Args:
            features: (B, L, D) floating-point sets.
            lengths: (B,) ``torch.long`` on ``features.device``, 1 <= lengths[b] <= L.

        Returns:
            :class:`PoolingOutput`: pooled (B, D); weights (B, max(lengths)) over
            ``self.weights_over``, zero past each length, or None; attributes or None.
        """

    def pool_map(self, feature_map: Tensor) -> PoolingOutput:
        """Check a (B, C, H, W) map and pool its H*W grid vectors: pooled (B, C) (or the
        pooler's output size), weights (B, H*W) over ranks or (B, H, W) over positions."""
        check_feature_map(feature_map, type(self).__name__)
        return self.pool_grid(feature_map)

    def pool_grid(self, feature_map: Tensor) -> PoolingOutput:
        """Pool a (B, C, H, W) map already checked by :meth:`pool_map` (optional override).

        The default pools the H*W grid vectors as one full set with :meth:`pool_padded` and
        shapes weights over positions as (B, H, W). Poolers with a native map
        implementation (``AvgPooling`` and ``GeMPooling`` use mmpretrain's) override it.
        """
        batch, _, height, width = feature_map.shape
        features = feature_map.flatten(2).transpose(1, 2)
        lengths = torch.full((batch,), height * width, dtype=torch.long, device=features.device)
        out = self.pool_padded(features, lengths)
        if out.weights_over == 'position':
            return replace(out, weights=out.weights.reshape(batch, height, width))
        return out

    def forward(self, inputs: Tensor | tuple[Tensor, ...], lengths: LengthsLike = None):
        """mmpretrain's neck call: pooled vectors only (see the class docstring)."""
        if isinstance(inputs, tuple | list):
            return tuple(self.pool_map(x).pooled for x in inputs)
        if isinstance(inputs, Tensor) and inputs.dim() == 4 and lengths is None:
            return self.pool_map(inputs).pooled
        if isinstance(inputs, Tensor) and inputs.dim() == 3:
            return self.pool(inputs, lengths).pooled
        shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(
            f'{type(self).__name__}: expected a tuple of (B, C, H, W) maps, one '
            f'(B, C, H, W) map, or a (B, L, D) set with lengths; got {shape}.'
        )


def rank_weights(pooler: BaseSetPooling, set_sizes: Sequence[int]) -> Tensor:
    """(len(set_sizes), max(set_sizes)) weights over ranks, 0 past each size: the
    ``PoolingOutput.weights`` of pooling zero sets of those sizes (for weights over ranks that
    depend only on the set size, as GPO's theta, the input values do not matter)."""
    if pooler.weights_over != 'rank':
        raise ValueError(
            f'rank_weights: {type(pooler).__name__} has weights over {pooler.weights_over!r}, '
            "not over ranks; only poolers with weights_over == 'rank' have them."
        )
    param = next(pooler.parameters(), torch.zeros(()))
    lengths = torch.tensor([int(n) for n in set_sizes], device=param.device)
    dtype = param.dtype if param.is_floating_point() else torch.float32
    zeros = torch.zeros(len(lengths), int(lengths.max()), 1, dtype=dtype, device=param.device)
    return pooler.pool(zeros, lengths).weights
