"""GSP, Generalized Sum Pooling (docs/pooling.md#gsp-generalized-sum-pooling)."""

from __future__ import annotations

import math
import operator
import warnings
from dataclasses import replace

import torch
from mmengine.dist import broadcast, get_world_size
from torch import Tensor, nn

from gpo_plugin.registry import MODELS

from ..utils.partial_transport import (
    attribute_vectors,
    greedy_k_center,
    partial_transport,
    pooling_weights,
    transport_cost,
    unit_ball,
)
from .base_set_pooling import BaseSetPooling
from .pooling_output import PoolingOutput


def warn_if_collapsed(centers: Tensor, tolerance: float = 1e-6) -> None:
    """Warn when k-center found fewer distinct prototypes than it was asked for: the
    collected embeddings were (nearly) all equal, e.g. from all-zero feature maps."""
    distinct = torch.unique((centers / tolerance).round(), dim=0).shape[0]
    if distinct < centers.shape[0]:
        warnings.warn(
            f'GSP: k-center initialisation found only {distinct} distinct prototype(s) of '
            f'{centers.shape[0]}: the embeddings of the first training batches are (nearly) '
            'identical, e.g. all-zero feature maps, so the prototypes collapse. Check the '
            'backbone output and the input images, or call init_prototypes() on real data.',
            stacklevel=4,
        )


@MODELS.register_module()
class GSP(BaseSetPooling):
    """Generalized Sum Pooling: a weighted average of projected local features whose weights
    come from an entropy-smoothed partial optimal transport onto learnable prototypes.

    Each of the n local features x_j = proj(f_j) carries mass 1/n; a fraction ``transport_ratio``
    (mu) of the total mass is transported to the prototypes at cost ||phi(z_i) - phi(x_j)||
    (phi: projection onto the unit ball), the rest stays behind. A feature's pooling weight is
    the share of its mass that was transported, w_j = (1 - n r_j) / mu (mean 1), and the pooled
    vector is (1/n) sum_j w_j x_j. mu = 1 is exactly global average pooling of x. The solve is
    exact (float64 root finding) and the backward is the closed-form implicit gradient.

    Prototypes are initialised by greedy k-center over the first pooled training embeddings
    (``kcenter_init=True``), copied in place into the existing parameter so that an optimizer
    built before keeps updating it.

    Args:
        in_channels: channels C of the backbone maps (or D_in of a set).
        out_channels: embedding size D.
        num_prototypes: number m of prototypes. Defaults to 64 (128 for SOP in the paper).
        transport_ratio: mu in (0, 1]. Defaults to 0.3.
        gamma: inverse entropy weight 1/eps (> 0; safe up to at least 50). Defaults to 5.0.
        kcenter_init: initialise the prototypes by k-center on the first training batches.
            Defaults to True.
        kcenter_source: ``'pooled'`` (average of the projected local features of each image,
            collected over as many batches as it takes to reach m of them) or ``'local'`` (the
            projected local features of the first batch). Defaults to ``'pooled'``.
        init_cfg: mmengine initialisation config. Defaults to None.

    Shapes:
        ``forward``: tuple of (B, C, H, W) -> tuple of (B, D) (the mmpretrain neck call).
        ``pool_map``: (B, C, H, W) -> ``PoolingOutput`` of pooled (B, D), weights w (B, H, W)
        over positions (mean 1) and attributes (B, m) (for the zero-shot loss).
        ``pool``: full sets (B, n, C) -> the same with weights (B, n); padded sets are
        refused (every feature carries mass 1/n).
    """

    weights_over = 'position'
    gives_attributes = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_prototypes: int = 64,
        transport_ratio: float = 0.3,
        gamma: float = 5.0,
        kcenter_init: bool = True,
        kcenter_source: str = 'pooled',
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if not 0.0 < transport_ratio <= 1.0:
            raise ValueError(
                f'GSP: `transport_ratio` (mu) must lie in (0, 1], got '
                f'{transport_ratio}. Set e.g. neck.transport_ratio=0.3 in the config.'
            )
        if not (math.isfinite(gamma) and gamma > 0):
            raise ValueError(f'GSP: `gamma` must be a finite number > 0, got {gamma}.')
        try:
            if isinstance(num_prototypes, bool):
                raise TypeError
            num_prototypes = operator.index(num_prototypes)  # ints, numpy ints
        except TypeError:
            raise TypeError(
                f'GSP: `num_prototypes` must be an int, got {num_prototypes!r}.'
            ) from None
        if num_prototypes < 1:
            raise ValueError(f'GSP: `num_prototypes` must be >= 1, got {num_prototypes}.')
        if kcenter_source not in ('pooled', 'local'):
            raise ValueError(
                f"GSP: `kcenter_source` must be 'pooled' or 'local', got {kcenter_source!r}."
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_prototypes = num_prototypes
        self.transport_ratio = float(transport_ratio)
        self.gamma = float(gamma)
        self.kcenter_init = kcenter_init
        self.kcenter_source = kcenter_source
        self.proj = nn.Linear(in_channels, out_channels)
        self.prototypes = nn.Parameter(torch.empty(num_prototypes, out_channels))
        # Persistent, so that resuming a run never re-initialises trained prototypes.
        self.register_buffer('prototypes_initialised', torch.tensor(not kcenter_init))
        self._pending: list[Tensor] = []
        self.reset_prototypes()

    @property
    def awaits_data_init(self) -> bool:
        """True until the k-center initialisation of the prototypes has run."""
        return not bool(self.prototypes_initialised)

    def reset_prototypes(self) -> None:
        """Random directions of norm 1/2 (inside the unit ball)."""
        with torch.no_grad():
            self.prototypes.normal_()
            self.prototypes.mul_(0.5 / self.prototypes.norm(dim=1, keepdim=True))

    # -- pooling -----------------------------------------------------------------------------

    def pool_padded(self, features: Tensor, lengths: Tensor) -> PoolingOutput:
        """Full sets only: every ``lengths[b]`` must equal n (each feature carries mass 1/n)."""
        self._require_full_sets(lengths, features.shape[1])
        return self._pool_full(features)

    def pool_grid(self, feature_map: Tensor) -> PoolingOutput:
        # Skips pool_padded's length check (a device sync): a grid is always a full set.
        batch, _, height, width = feature_map.shape
        out = self._pool_full(feature_map.flatten(2).transpose(1, 2))
        return replace(out, weights=out.weights.reshape(batch, height, width))

    def _pool_full(self, features: Tensor) -> PoolingOutput:
        """Full sets (B, n, C) -> pooled (B, D), weights (B, n), attributes (B, m)."""
        self._check_features(features)
        with torch.autocast(device_type=features.device.type, enabled=False):
            # fp32 at least (fp16 exp/log-sum-exp would lose the transport's precision).
            dtype = torch.promote_types(self.proj.weight.dtype, torch.float32)
            weight, bias = self.proj.weight.to(dtype), self.proj.bias.to(dtype)
            x = nn.functional.linear(features.to(dtype), weight, bias)
            if self.training and self.awaits_data_init:
                self._maybe_init_prototypes(x.detach())
            cost = transport_cost(x, self.prototypes.to(dtype))
            residual, plan = partial_transport(cost, self.transport_ratio, self.gamma)
            weights = pooling_weights(residual, self.transport_ratio)
            pooled = torch.einsum('bn,bnd->bd', weights, x) / x.shape[1]
            attributes = attribute_vectors(plan, self.transport_ratio)
        return PoolingOutput(pooled, weights, 'position', attributes)

    @staticmethod
    def _require_full_sets(lengths: Tensor, set_len: int) -> None:
        if bool((lengths != set_len).any()):
            raise ValueError(
                'GSP.pool: padded sets are not supported (every feature carries mass '
                '1/n); pass full sets (lengths=None) or pool each size separately.'
            )

    def _check_features(self, features: Tensor) -> None:
        if features.shape[-1] != self.in_channels:
            raise ValueError(
                f'GSP: the backbone gives {features.shape[-1]} channels but '
                f'neck.in_channels = {self.in_channels}; set `in_channels` of the '
                f'GSP neck in the config to {features.shape[-1]}.'
            )
        if features.shape[1] == 0:
            raise ValueError('GSP: got an empty set of local features (H * W = 0).')

    # -- prototype initialisation --------------------------------------------------------------

    def _maybe_init_prototypes(self, x: Tensor) -> None:
        """Collect embeddings of this batch; once m are there, k-center them into the prototypes.

        Runs before the prototypes enter this forward's graph, so the in-place copy is safe.
        """
        points = x.mean(dim=1) if self.kcenter_source == 'pooled' else x.flatten(0, 1)
        self._check_finite(points, 'the embeddings collected for k-center initialisation')
        self._pending.append(unit_ball(points))
        collected = torch.cat(self._pending)
        if collected.shape[0] >= self.num_prototypes:
            self.init_prototypes(collected)

    @torch.no_grad()
    def init_prototypes(self, embeddings: Tensor) -> None:
        """Greedy k-center over (N, D) embeddings (N >= m), copied in place into the parameter
        (broadcast from rank 0 under distributed training)."""
        if embeddings.dim() != 2 or embeddings.shape[1] != self.out_channels:
            raise ValueError(
                f'GSP.init_prototypes: embeddings must be (N, {self.out_channels}), '
                f'got {tuple(embeddings.shape)}.'
            )
        self._check_finite(embeddings, 'GSP.init_prototypes: embeddings')
        points = unit_ball(embeddings.detach().float())
        centers = points[greedy_k_center(points, self.num_prototypes)]
        warn_if_collapsed(centers)
        if get_world_size() > 1:
            broadcast(centers, 0)
        self.prototypes.copy_(centers.to(self.prototypes.dtype))
        self.prototypes_initialised.fill_(True)
        self._pending = []

    @staticmethod
    def _check_finite(points: Tensor, what: str) -> None:
        """Prototypes copied from a NaN embedding stay NaN forever: refuse it up front."""
        finite = torch.isfinite(points).flatten(1).all(dim=1)
        if not bool(finite.all()):
            row = int(torch.argmin(finite.int()))
            raise ValueError(
                f'GSP: {what} hold non-finite values (row {row}); the prototypes would be '
                'NaN for the rest of training. Check the input images/features of the first '
                'training batches.'
            )

    def extra_repr(self) -> str:
        return f'm={self.num_prototypes}, mu={self.transport_ratio}, gamma={self.gamma}'
