"""GSP (docs/pooling.md#gsp-generalized-sum-pooling): exact solve, implicit gradient, mu = 1 -> GAP, outputs, k-center init."""

import pytest
import torch
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS

from gpo_plugin.models.necks import GSP
from gpo_plugin.models.utils.partial_transport import (
    greedy_k_center,
    partial_transport,
    solve_log_lambda,
    transport_cost,
)
from gpo_plugin.registry import MODELS

from references.gsp import fixed_point_lambda, unrolled_gsp, unrolled_transport

SETTINGS = [(0.3, 5.0), (0.7, 0.5), (0.1, 20.0), (0.9, 2.0)]


def _cost(batch=3, m=5, n=7, dtype=torch.float64):
    return torch.rand(batch, m, n, dtype=dtype) * 2


@pytest.mark.parametrize('mu,gamma', SETTINGS)
def test_solver_matches_fixed_point_iteration_run_to_convergence(mu, gamma):
    cost = _cost()
    log_lambda = solve_log_lambda(torch.logsumexp(-gamma * cost, dim=1), mu)
    expected = fixed_point_lambda(cost, mu, gamma)
    torch.testing.assert_close(log_lambda.exp(), expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize('mu,gamma', SETTINGS)
def test_transport_marginals(mu, gamma):
    cost = _cost()
    residual, plan = partial_transport(cost, mu, gamma)
    n = cost.shape[-1]
    assert (plan >= 0).all() and (residual >= 0).all()
    torch.testing.assert_close(residual + plan.sum(1), torch.full_like(residual, 1 / n))
    torch.testing.assert_close(plan.sum((1, 2)), torch.full((3,), mu, dtype=torch.float64))
    # P = lam K u with u = r: the solution form in docs/pooling.md#gsp-generalized-sum-pooling.
    lam = fixed_point_lambda(cost, mu, gamma)
    expected_plan = lam[:, None, None] * torch.exp(-gamma * cost) * residual[:, None, :]
    torch.testing.assert_close(plan, expected_plan, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize('mu,gamma', SETTINGS + [(1.0, 5.0), (0.3, 50.0)])
def test_implicit_backward_gradcheck(mu, gamma):
    cost = _cost(2, 4, 6).requires_grad_()
    assert torch.autograd.gradcheck(lambda c: partial_transport(c, mu, gamma), (cost,))


@pytest.mark.parametrize('mu,gamma', [(0.3, 5.0), (0.7, 0.5), (0.5, 3.0)])
def test_implicit_backward_matches_long_unrolled_autograd(mu, gamma):
    cost = _cost().requires_grad_()
    grad_r, grad_p = (
        torch.randn(3, 7, dtype=torch.float64),
        torch.randn(3, 5, 7, dtype=torch.float64),
    )

    def grad_of(fn):
        residual, plan = fn(cost)[:2]
        (grad,) = torch.autograd.grad((residual * grad_r).sum() + (plan * grad_p).sum(), cost)
        return grad

    implicit = grad_of(lambda c: partial_transport(c, mu, gamma))
    unrolled = grad_of(lambda c: unrolled_transport(c, mu, gamma, iterations=3000))
    torch.testing.assert_close(implicit, unrolled, rtol=0, atol=1e-9)


def test_full_module_gradcheck_and_unrolled_reference():
    gsp = GSP(6, 4, num_prototypes=5, transport_ratio=0.4, gamma=3.0, kcenter_init=False).double()
    maps = torch.randn(2, 6, 2, 3, dtype=torch.float64, requires_grad=True)
    proto = gsp.prototypes.detach().clone().requires_grad_()
    weight = gsp.proj.weight.detach().clone().requires_grad_()
    # The whole chain (projection, unit ball, cost, transport) against finite differences.
    assert torch.autograd.gradcheck(
        lambda x, p, w: _functional_gsp(gsp, x, p, w), (maps, proto, weight)
    )
    out = gsp.pool_map(maps)
    ref = unrolled_gsp(gsp, maps, iterations=3000)
    for mine, theirs in zip((out.pooled, out.attributes, out.weights), ref, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-12)


def _functional_gsp(gsp, x, proto, weight):
    feats = torch.nn.functional.linear(x.flatten(2).transpose(1, 2), weight, gsp.proj.bias)
    residual, plan = partial_transport(transport_cost(feats, proto), gsp.transport_ratio, gsp.gamma)
    weights = 1 - feats.shape[1] * residual
    return (weights[..., None] * feats).mean(1), plan.sum(-1)


def test_mu_one_is_exactly_global_average_pooling():
    gsp = GSP(8, 5, num_prototypes=4, transport_ratio=1.0, kcenter_init=False)
    maps = torch.randn(3, 8, 4, 4)
    out = gsp.pool_map(maps)
    pooled, weights = out.pooled, out.weights
    assert torch.equal(weights, torch.ones_like(weights))
    torch.testing.assert_close(pooled, gsp.proj(maps.mean((2, 3))), rtol=1e-6, atol=1e-6)


def test_outputs_shapes_simplex_and_weight_range():
    gsp = GSP(8, 5, num_prototypes=4, transport_ratio=0.3, gamma=5.0, kcenter_init=False)
    maps = torch.randn(3, 8, 4, 2)
    (pooled,) = gsp((maps,))
    assert pooled.shape == (3, 5)
    out = gsp.pool_map(maps)
    assert out.weights_over == 'position'
    pooled2, attributes, weights = out.pooled, out.attributes, out.weights
    torch.testing.assert_close(pooled2, pooled)
    assert attributes.shape == (3, 4) and weights.shape == (3, 4, 2)
    assert (attributes >= 0).all()
    torch.testing.assert_close(attributes.sum(1), torch.ones(3))
    assert (weights >= 0).all() and (weights <= 1 / 0.3 + 1e-5).all()
    torch.testing.assert_close(weights.mean((1, 2)), torch.ones(3))
    # pooled = (1/n) sum_j w_j x_j
    x = gsp.proj(maps.flatten(2).transpose(1, 2))
    torch.testing.assert_close(pooled, (weights.flatten(1)[..., None] * x).mean(1))


@pytest.mark.parametrize('scale', [1e-4, 1.0, 1e4])
def test_numerically_safe_large_gamma_any_scale(scale):
    gsp = GSP(8, 6, num_prototypes=16, transport_ratio=0.3, gamma=50.0, kcenter_init=False)
    maps = (torch.randn(4, 8, 5, 5) * scale).requires_grad_()
    out = gsp.pool_map(maps)
    pooled, attributes, weights = out.pooled, out.attributes, out.weights
    (pooled.sum() + attributes.pow(2).sum()).backward()
    for t in (pooled, attributes, weights, maps.grad, gsp.prototypes.grad):
        assert torch.isfinite(t).all()
    torch.testing.assert_close(weights.mean((1, 2)), torch.ones(4), rtol=1e-5, atol=1e-5)


def test_fp32_inside_autocast():
    gsp = GSP(8, 6, num_prototypes=4, kcenter_init=False)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = gsp.pool_map(torch.randn(2, 8, 3, 3).bfloat16())
    pooled, attributes, weights = out.pooled, out.attributes, out.weights
    assert pooled.dtype == attributes.dtype == weights.dtype == torch.float32
    torch.testing.assert_close(weights.mean((1, 2)), torch.ones(2))


def test_kcenter_init_in_place_and_optimizer_keeps_updating():
    gsp = GSP(8, 6, num_prototypes=5, kcenter_init=True)
    optimizer = torch.optim.SGD(gsp.parameters(), lr=0.5)
    param = gsp.prototypes
    maps = torch.randn(3, 8, 2, 2)
    gsp.train()
    gsp((maps,))  # 3 pooled embeddings < 5 prototypes: keeps collecting
    assert not bool(gsp.prototypes_initialised)
    maps2 = torch.randn(3, 8, 2, 2)
    (pooled,) = gsp((maps2,))
    assert bool(gsp.prototypes_initialised) and gsp.prototypes is param
    # The prototypes are 5 of the 6 (unit-ball projected) average-pooled embeddings.
    with torch.no_grad():
        pooled_all = gsp.proj(torch.cat([maps, maps2]).mean((2, 3)))
        pooled_all = pooled_all / pooled_all.norm(dim=1, keepdim=True).clamp_min(1)
    distances = torch.cdist(gsp.prototypes.detach(), pooled_all)
    assert (distances.min(dim=1).values < 1e-5).all()
    assert len(set(distances.argmin(dim=1).tolist())) == 5
    before = param.detach().clone()
    pooled.pow(2).sum().backward()
    optimizer.step()
    assert not torch.equal(before, gsp.prototypes.detach())
    assert any(p is param for group in optimizer.param_groups for p in group['params'])
    # The flag is persistent state: a checkpoint restores it and k-center does not run again.
    assert 'prototypes_initialised' in gsp.state_dict()


def test_greedy_k_center_hand_example():
    points = torch.tensor([[0.0], [1.0], [2.0], [10.0], [4.0]])
    # mean = 3.4: the farthest is 10, then 0 (farthest from 10), then 4 (min-distance 4) -- ties
    # none.
    assert greedy_k_center(points, 3).tolist() == [3, 0, 4]


def test_build_from_registries():
    cfg = dict(type='GSP', in_channels=8, out_channels=4, num_prototypes=3)
    assert isinstance(MODELS.build(cfg), GSP)
    assert isinstance(MMPRETRAIN_MODELS.build(cfg), GSP)


def test_clear_errors():
    with pytest.raises(ValueError, match='transport_ratio'):
        GSP(8, 4, transport_ratio=0.0)
    with pytest.raises(ValueError, match='transport_ratio'):
        GSP(8, 4, transport_ratio=1.5)
    gsp = GSP(8, 4, num_prototypes=3, kcenter_init=False)
    with pytest.raises(ValueError, match='in_channels = 8'):
        gsp((torch.randn(2, 16, 3, 3),))
    with pytest.raises(ValueError, match=r'\(B, C, H, W\)'):
        gsp.pool_map(torch.randn(2, 8, 3))
    with pytest.raises(ValueError, match='padded sets'):
        gsp.pool(torch.randn(2, 5, 8), lengths=[5, 3])
    with pytest.raises(ValueError, match=r'mu'):
        partial_transport(torch.rand(1, 2, 3), 0.0, 5.0)


@pytest.mark.parametrize('mu,gamma', [(1e-6, 50.0), (0.999999, 50.0), (0.5, 1e-3), (0.3, 200.0)])
def test_extreme_ratios_and_temperatures_keep_the_constraints(mu, gamma):
    cost = (torch.rand(4, 64, 49) * 2).requires_grad_()
    residual, plan = partial_transport(cost, mu, gamma)
    torch.testing.assert_close(plan.sum((1, 2)), torch.full((4,), mu), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(residual + plan.sum(1), torch.full_like(residual, 1 / 49))
    (residual.sum() + (plan * torch.randn_like(plan)).sum()).backward()
    assert torch.isfinite(cost.grad).all()
