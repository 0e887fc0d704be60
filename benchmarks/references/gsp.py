"""GSP written as the reference implementation does it: a fixed number of unrolled fixed-point
iterations, differentiated by autograd through every iteration. For tests and benchmarks only.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gpo_plugin.models.utils.partial_transport import transport_cost


def unrolled_transport(
    cost: Tensor, mu: float, gamma: float, iterations: int = 100
) -> tuple[Tensor, Tensor, Tensor]:
    """u <- (1/n) / (1 + lam s), lam <- mu / sum_j u_j s_j, ``iterations`` times from lam = mu.

    Args:
        cost: (B, m, n) costs.

    Returns:
        residual r = u (B, n), plan P = lam K u (B, m, n), lam (B,).
    """
    n = cost.shape[-1]
    kernel = torch.exp(-gamma * cost)
    mass = kernel.sum(dim=1)  # s_j
    lam = torch.full(cost.shape[:1], mu, dtype=cost.dtype, device=cost.device)
    for _ in range(iterations):
        u = (1 / n) / (1 + lam[:, None] * mass)
        lam = mu / (u * mass).sum(dim=1)
    u = (1 / n) / (1 + lam[:, None] * mass)
    return u, lam[:, None, None] * kernel * u[:, None, :], lam


def fixed_point_lambda(
    cost: Tensor, mu: float, gamma: float, tol: float = 1e-15, max_iter: int = 1_000_000
) -> Tensor:
    """The same fixed-point iteration, without gradients, run until lambda stops changing."""
    with torch.no_grad():
        n = cost.shape[-1]
        mass = torch.exp(-gamma * cost.double()).sum(dim=1)
        lam = torch.full(cost.shape[:1], mu, dtype=torch.float64, device=cost.device)
        for _ in range(max_iter):
            u = (1 / n) / (1 + lam[:, None] * mass)
            new = mu / (u * mass).sum(dim=1)
            if bool(((new - lam).abs() <= tol * new).all()):
                return new
            lam = new
    raise RuntimeError('fixed_point_lambda: no convergence')


def unrolled_gsp(gsp, feature_map: Tensor, iterations: int = 100) -> tuple[Tensor, Tensor, Tensor]:
    """GSP's forward with the unrolled solver, using ``gsp``'s parameters.

    Args:
        gsp: a :class:`gpo_plugin.models.necks.GSP`.
        feature_map: (B, C, H, W).

    Returns:
        pooled (B, D), attributes (B, m), weights (B, H, W).
    """
    batch, _, height, width = feature_map.shape
    n = height * width
    x = gsp.proj(feature_map.flatten(2).transpose(1, 2))
    mu = gsp.transport_ratio
    residual, plan, _ = unrolled_transport(
        transport_cost(x, gsp.prototypes), mu, gsp.gamma, iterations
    )
    weights = (1 - n * residual) / mu
    pooled = (weights[..., None] * x).mean(dim=1)
    return pooled, plan.sum(-1) / mu, weights.reshape(batch, height, width)
