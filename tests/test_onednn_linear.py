"""The oneDNN float32 products (gpo_plugin/utils/onednn_linear.py) against float64 references,
their fallbacks, and the process switch."""

import pytest
import torch
import torch.nn.functional as F

import gpo_plugin.utils.onednn_linear as onednn
from gpo_plugin.models.encoders import PrecompRegionEncoder
from gpo_plugin.utils.onednn_linear import linear, matmul_nt, onednn_routing, routed


@pytest.fixture
def counted_products(monkeypatch):
    """Counts the products that reach oneDNN, so a test can tell the routes apart; small
    products are routed too."""
    monkeypatch.setattr(onednn, 'MIN_MULTIPLY_ADDS', 0)
    calls = []
    product = onednn._product

    def counting(*args):
        calls.append(args[0].shape)
        return product(*args)

    monkeypatch.setattr(onednn, '_product', counting)
    return calls


@pytest.mark.parametrize('shape', [(9, 16), (3, 5, 16)])
@pytest.mark.parametrize('with_bias', [True, False])
@pytest.mark.parametrize('input_grad', [True, False])
def test_linear_equals_float64_forward_and_backward(shape, with_bias, input_grad, counted_products):
    torch.manual_seed(0)
    x = torch.randn(shape, requires_grad=input_grad)
    weight = torch.randn(12, 16, requires_grad=True)
    bias = torch.randn(12, requires_grad=True) if with_bias else None
    upstream = torch.randn(*shape[:-1], 12)
    with onednn_routing(True):
        out = linear(x, weight, bias)
    (out * upstream).sum().backward()
    # forward, grad W, and grad x when x needs it: every product went through oneDNN
    assert len(counted_products) == 2 + input_grad

    leaves = [t.detach().double().requires_grad_(t.requires_grad) for t in (x, weight)]
    ref_bias = bias.detach().double().requires_grad_() if with_bias else None
    ref = F.linear(leaves[0], leaves[1], ref_bias)
    (ref * upstream.double()).sum().backward()
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(weight.grad.double(), leaves[1].grad, rtol=0, atol=1e-5)
    if input_grad:
        torch.testing.assert_close(x.grad.double(), leaves[0].grad, rtol=0, atol=1e-5)
    else:
        assert x.grad is None
    if with_bias:
        torch.testing.assert_close(bias.grad.double(), ref_bias.grad, rtol=0, atol=1e-5)


def test_matmul_nt_takes_strided_views_and_a_bias(counted_products):
    torch.manual_seed(1)
    a, b, bias = torch.randn(20, 7).t(), torch.randn(11, 40)[:, ::2], torch.randn(11)
    with onednn_routing(True):
        out = matmul_nt(a, b, bias)
    assert len(counted_products) == 1
    ref = a.double() @ b.double().t() + bias.double()
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=1e-5)


def test_what_is_not_routed_falls_back_to_torch(counted_products):
    x, weight = torch.randn(4, 6), torch.randn(3, 6)
    with onednn_routing(True):
        assert not routed(x.double(), weight.double())
        assert not routed(x[:0], weight)
        double = (x.double(), weight.double())
        torch.testing.assert_close(linear(*double), F.linear(*double), rtol=0, atol=0)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert linear(x, weight).dtype == torch.bfloat16  # autocast still applies
        tracked = weight.clone().requires_grad_()
        matmul_nt(x, tracked).sum().backward()  # autograd kept: torch's product
        assert tracked.grad is not None
    with onednn_routing(False):
        linear(x, weight)
    assert counted_products == []


def test_small_products_stay_with_torch(monkeypatch):
    calls = []
    product = onednn._product
    monkeypatch.setattr(onednn, '_product', lambda *args: calls.append(args) or product(*args))
    with onednn_routing(True):
        linear(torch.randn(8, 16), torch.randn(32, 16))  # 4096 multiply-adds
        matmul_nt(torch.randn(8, 16), torch.randn(32, 16))
        assert calls == []
        linear(torch.randn(64, 256), torch.randn(128, 256))  # 2^21
    assert len(calls) == 1


@pytest.mark.parametrize(('value', 'expected'), [('0', False), ('1', True), (' 1 ', True)])
def test_the_environment_variable_switches_the_routing(monkeypatch, value, expected):
    monkeypatch.setenv(onednn.ENV_VAR, value)
    onednn.onednn_enabled.cache_clear()
    try:
        assert onednn.onednn_enabled() is expected
    finally:
        onednn.onednn_enabled.cache_clear()


def test_a_bad_environment_value_is_named(monkeypatch):
    monkeypatch.setenv(onednn.ENV_VAR, 'yes')
    onednn.onednn_enabled.cache_clear()
    try:
        with pytest.raises(ValueError, match='GPO_PLUGIN_ONEDNN_LINEAR must be 0, 1 or auto'):
            onednn.onednn_enabled()
    finally:
        onednn.onednn_enabled.cache_clear()


def test_region_encoder_is_the_same_function_on_either_route(counted_products):
    torch.manual_seed(2)
    encoder = PrecompRegionEncoder(in_channels=32, embed_dim=16).train()
    regions, lengths = torch.randn(5, 7, 32), torch.tensor([7, 3, 5, 1, 6])
    results = []
    for enabled in (True, False):
        encoder.zero_grad()
        with onednn_routing(enabled):
            out = encoder(regions, lengths)
        out.pow(2).sum().backward()
        results.append([out.detach()] + [p.grad.clone() for p in encoder.parameters()])
    # routing on: three products forward; backward three weight gradients and the input
    # gradient of the MLP's second layer (the regions need none)
    assert len(counted_products) == 7
    for got, expected in zip(*results, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
