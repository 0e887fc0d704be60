"""Entropy-smoothed partial optimal transport of GSP (docs/pooling.md#gsp-generalized-sum-pooling): solver and implicit gradient.

Every local feature j has mass 1/n; a fraction reaches the m prototypes (plan P, m x n), the
rest stays in a zero-cost residual r_j, and exactly ``mu`` of the total mass is transported.
With s_j = sum_i exp(-gamma c_ij), the solution is

    u_j = (1/n) / (1 + lam s_j),   P = lam K * u,   r = u,   lam * sum_j u_j s_j = mu.

Writing t = log(lam) and l_j = log(s_j), the constraint reads mean_j sigmoid(t + l_j) = mu: one
monotone scalar equation per sample, solved here to machine precision in float64 with a
bracketed Newton method (no fixed iteration count), entirely in the log domain so that large
gamma and far-away prototypes never underflow. In that form

    r_j = (1 - sigma_j) / n,   P_ij = sigma_j q_ij / n,   q_ij = softmax_i(-gamma c_ij).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def unit_ball(vectors: Tensor) -> Tensor:
    """phi(v) = v / max(1, ||v||) along the last dim: leaves vectors inside the ball alone."""
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1.0)


def transport_cost(features: Tensor, prototypes: Tensor, eps: float = 1e-12) -> Tensor:
    """Euclidean (not squared) distances between unit-ball-projected prototypes and features.

    Args:
        features: (B, n, D) local features x_j.
        prototypes: (m, D) prototypes z_i.
        eps: floor of the squared distance, keeping the sqrt differentiable at 0.

    Returns:
        (B, m, n) costs c_ij = ||phi(z_i) - phi(x_j)|| in [0, 2].
    """
    z = unit_ball(prototypes)
    # phi(x) = x * scale with scale = 1 / max(1, ||x||): the cross term and |phi(x)|^2 come
    # from x and its norm directly, without materialising phi(x) (B, n, D) or a second
    # squared norm (a third less elementwise work and backward over the largest tensor).
    norm = features.norm(dim=-1)  # (B, n)
    scale = 1 / norm.clamp_min(1.0)
    cross = torch.einsum('md,bnd->bmn', z, features) * scale[:, None, :]
    squared = z.pow(2).sum(-1)[None, :, None] + (norm * scale).pow(2)[:, None, :] - 2 * cross
    return squared.clamp_min(eps).sqrt()


def solve_log_lambda(log_mass: Tensor, mu: float, max_iter: int = 200) -> Tensor:
    """Solve mean_j sigmoid(t + log_mass[b, j]) = mu for t = log(lambda), per row, in float64.

    Safeguarded Newton: the root is bracketed by logit(mu) - max_j l_j and logit(mu) - min_j l_j
    (the mean of sigmoids lies between the smallest and the largest one); a Newton step that
    leaves the current bracket is replaced by bisection. Iterates until every row's step (or
    bracket) is at the float64 resolution of t; ``max_iter`` is only a guard (bisection alone
    needs about 60 halvings for any bracket this function can produce).

    Args:
        log_mass: (B, n) l_j = log s_j.
        mu: transported fraction in (0, 1).

    Returns:
        (B,) float64 t.
    """
    ell = log_mass.double()
    target = math.log(mu) - math.log1p(-mu)
    low = target - ell.amax(dim=1)
    high = target - ell.amin(dim=1)
    t = (target - ell.mean(dim=1)).clamp(low, high)
    resolution = 4 * torch.finfo(torch.float64).eps
    active = torch.ones_like(t, dtype=torch.bool)
    for _ in range(max_iter):
        z = t[:, None] + ell
        sig = torch.sigmoid(z)
        excess = sig.mean(dim=1) - mu
        slope = (sig * torch.sigmoid(-z)).mean(dim=1)
        high = torch.where(excess > 0, t, high)
        low = torch.where(excess < 0, t, low)
        newton = t - excess / slope
        inside = (newton > low) & (newton < high) & torch.isfinite(newton)
        proposal = torch.where(inside, newton, (low + high) / 2)
        scale = 1 + t.abs()
        converged = (excess == 0) | ((proposal - t).abs() <= resolution * scale)
        converged |= (high - low) <= resolution * scale
        t = torch.where(active & (excess != 0), proposal, t)
        active &= ~converged
        if not bool(active.any()):
            break
    return t


def _transport(cost: Tensor, mu: float, gamma: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Returns residual r (B, n), plan P (B, m, n), sigma (B, n), q (B, m, n)."""
    n = cost.shape[-1]
    logits = -gamma * cost
    log_mass = torch.logsumexp(logits, dim=1)  # (B, n)
    q = torch.exp(logits - log_mass[:, None])
    if mu == 1.0:  # lambda = inf: everything is transported, w == 1 exactly
        sigma = torch.ones_like(log_mass)
        rest = torch.zeros_like(log_mass)
    else:
        z = solve_log_lambda(log_mass, mu)[:, None] + log_mass.double()
        sigma = torch.sigmoid(z).to(cost.dtype)
        rest = torch.sigmoid(-z).to(cost.dtype)  # 1 - sigma without cancellation
    residual = rest / n
    plan = sigma[:, None] * q / n
    return residual, plan, sigma, q


class PartialTransportFunction(torch.autograd.Function):
    """(cost (B, m, n)) -> (residual r (B, n), plan P (B, m, n)) with the closed-form implicit
    backward of docs/pooling.md#gsp-generalized-sum-pooling (exact at the fixed point, independent of how it was found)."""

    @staticmethod
    def forward(ctx, cost: Tensor, mu: float, gamma: float) -> tuple[Tensor, Tensor]:
        residual, plan, sigma, q = _transport(cost, mu, gamma)
        ctx.save_for_backward(residual, plan, sigma, q)
        ctx.gamma = gamma
        return residual, plan

    @staticmethod
    def backward(ctx, grad_residual: Tensor | None, grad_plan: Tensor | None):
        residual, plan, sigma, q = ctx.saved_tensors
        if grad_residual is None:
            grad_residual = torch.zeros_like(residual)
        if grad_plan is None:
            grad_plan = torch.zeros_like(plan)
        n = residual.shape[-1]
        g = plan * grad_plan  # g_ij for the prototype rows
        rho = residual * grad_residual + g.sum(dim=1)  # column sums of X * G over all rows
        # nu = -kappa (sum_j g_0j - n sum_j rho_j r_j), with 1/kappa = (1/n) sum_j sigma_j (1 -
        # sigma_j) = f'(t); written as the equivalent, cancellation-free weighted mean.
        slope = sigma * (n * residual)  # sigma_j (1 - sigma_j)
        h = (q * grad_plan).sum(dim=1)
        total = slope.sum(dim=1, keepdim=True)
        numerator = (slope * (h - grad_residual)).sum(dim=1, keepdim=True)
        nu = torch.where(total > 0, numerator / total.clamp_min(torch.finfo(total.dtype).tiny), 0)
        grad_cost = -ctx.gamma * (g - n * plan * (rho + nu * residual)[:, None, :])
        return grad_cost, None, None


def partial_transport(cost: Tensor, mu: float, gamma: float) -> tuple[Tensor, Tensor]:
    """Solve GSP's partial transport for a batch of cost matrices.

    Args:
        cost: (B, m, n) costs c_ij (prototype i, feature j).
        mu: fraction of mass sent to prototypes, in (0, 1]; 1 gives w == 1 (average pooling).
        gamma: inverse entropy weight 1/eps (> 0).

    Returns:
        ``(residual, plan)``: r (B, n) and P (B, m, n), with r_j + sum_i P_ij = 1/n and
        sum P = mu per sample.
    """
    if not isinstance(cost, Tensor) or cost.dim() != 3:
        shape = tuple(cost.shape) if isinstance(cost, Tensor) else type(cost).__name__
        raise ValueError(f'partial_transport: `cost` must be (B, m, n), got {shape}.')
    if not 0.0 < mu <= 1.0:
        raise ValueError(
            f'partial_transport: the transported fraction mu (GSP `transport_ratio`) '
            f'must lie in (0, 1], got {mu}.'
        )
    if not gamma > 0:
        raise ValueError(f'partial_transport: `gamma` must be > 0, got {gamma}.')
    return PartialTransportFunction.apply(cost, float(mu), float(gamma))


def pooling_weights(residual: Tensor, mu: float) -> Tensor:
    """w_j = (1 - n r_j) / mu in [0, 1/mu], mean 1 over j. residual: (B, n) -> (B, n)."""
    return (1 - residual.shape[-1] * residual) / mu


def attribute_vectors(plan: Tensor, mu: float) -> Tensor:
    """a_i = sum_j P_ij / mu, a histogram over prototypes (sums to 1). (B, m, n) -> (B, m)."""
    return plan.sum(dim=-1) / mu


def greedy_k_center(points: Tensor, k: int) -> Tensor:
    """Greedy k-center (farthest-point) selection: indices (k,) of ``points`` (N, D), N >= k.

    Starts from the point farthest from the mean, then repeatedly adds the point farthest from
    the chosen set (a 2-approximation of the k-center objective).
    """
    if points.shape[0] < k:
        raise ValueError(f'greedy_k_center: need at least k = {k} points, got {points.shape[0]}.')
    points = points.double()
    first = int(torch.cdist(points.mean(0, keepdim=True), points)[0].argmax())
    chosen = [first]
    nearest = torch.cdist(points[first : first + 1], points)[0]
    for _ in range(k - 1):
        index = int(nearest.argmax())
        chosen.append(index)
        nearest = torch.minimum(nearest, torch.cdist(points[index : index + 1], points)[0])
    return torch.tensor(chosen, dtype=torch.long, device=points.device)
