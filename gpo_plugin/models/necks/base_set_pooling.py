"""Base class of every pooler: one method, ``pool_checked``, to override."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import torch
from mmengine.model import BaseModule
from torch import Tensor

from ..utils.set_ops import LengthsLike, check_feature_map, check_set_input


class BaseSetPooling(BaseModule, metaclass=ABCMeta):
    """A neck that pools a set of feature vectors into one vector.

    Subclasses implement :meth:`pool_checked` on padded sets whose lengths are already
    validated; :meth:`pool` is the public, checking entry. Encoders validate a set once where
    it enters the model and call :meth:`pool_checked` (each check syncs device to host).
    :meth:`forward` adds the mmpretrain neck convention on top:

    - a tuple of (B, C, H, W) maps -> a tuple of (B, C) vectors (the H*W grid vectors
      of each map form the set);
    - a single (B, C, H, W) map -> a (B, C) vector;
    - a (B, L, D) padded set (with optional ``lengths`` (B,)) -> a (B, D) vector.
    """

    def pool(self, features: Tensor, lengths: LengthsLike = None) -> tuple[Tensor, Tensor | None]:
        """Check and pool padded sets.

        Args:
            features: (B, L, D) float sets; positions >= lengths[b] are ignored.
            lengths: (B,) integer sizes in [1, L]; ``None`` means all L are valid.

        Returns:
            ``(pooled, weights)``: pooled (B, D), and the pooling weights over the
            sorted (descending) positions, (B, max(lengths), 1), or ``None`` for
            poolers that are not a weighted sum of order statistics.
        """
        lengths = check_set_input(features, lengths, f'{type(self).__name__}.pool')
        return self.pool_checked(features, lengths)

    @abstractmethod
    def pool_checked(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor | None]:
        """:meth:`pool` on input already validated by ``check_set_input``: ``lengths`` is a
        (B,) long tensor on ``features.device`` with 1 <= lengths[b] <= L."""

    def pool_map(self, feature_map: Tensor) -> Tensor:
        """Pool a (B, C, H, W) map over its H*W grid vectors into (B, C)."""
        check_feature_map(feature_map, type(self).__name__)
        return self.pool_checked_map(feature_map)

    def pool_checked_map(self, feature_map: Tensor) -> Tensor:
        """Pool a map already checked to be (B, C, H, W); poolers with a native map
        implementation (e.g. mmpretrain's) override this."""
        features = feature_map.flatten(2).transpose(1, 2)
        lengths = features.new_full((features.shape[0],), features.shape[1], dtype=torch.long)
        return self.pool_checked(features, lengths)[0]

    def forward(self, inputs: Tensor | tuple[Tensor, ...], lengths: LengthsLike = None):
        if isinstance(inputs, tuple | list):
            return tuple(self.pool_map(x) for x in inputs)
        if isinstance(inputs, Tensor) and inputs.dim() == 4 and lengths is None:
            return self.pool_map(inputs)
        if isinstance(inputs, Tensor) and inputs.dim() == 3:
            return self.pool(inputs, lengths)[0]
        shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(
            f'{type(self).__name__}: expected a tuple of (B, C, H, W) maps, one '
            f'(B, C, H, W) map, or a (B, L, D) set with lengths; got {shape}.'
        )
