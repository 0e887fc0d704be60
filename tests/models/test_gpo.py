"""GPO against docs/pooling.md#gpo-the-generalized-pooling-operator-vse: hand-computed cases, the per-sample formulation, invariances."""

import math

import pytest
import torch
from torch.autograd import gradcheck

from gpo_plugin.models.necks import GPO
from gpo_plugin.models.utils import sinusoid_encoding

from references.gpo import batched_reference_gpo, per_sample_gpo

PUBLISHED_KEYS = [
    'gru.weight_ih_l0',
    'gru.weight_hh_l0',
    'gru.bias_ih_l0',
    'gru.bias_hh_l0',
    'gru.weight_ih_l0_reverse',
    'gru.weight_hh_l0_reverse',
    'gru.bias_ih_l0_reverse',
    'gru.bias_hh_l0_reverse',
    'linear.weight',
]


def gpo_scoring_tanh_sin() -> GPO:
    """A GPO whose GRU state is exactly h_k[0] = tanh(sin(k)) in both directions.

    Update gate pinned shut (z = sigmoid(-60) ~ 1e-26), no recurrence, candidate reads
    PE channel 0 (= sin(k)); the linear layer reads hidden unit 0, so s_k = tanh(sin k).
    """
    gpo = GPO()
    with torch.no_grad():
        for p in gpo.parameters():
            p.zero_()
        hidden = gpo.d_hidden
        for suffix in ('', '_reverse'):
            getattr(gpo.gru, f'bias_ih_l0{suffix}')[hidden : 2 * hidden] = -60.0  # z gate
            getattr(gpo.gru, f'weight_ih_l0{suffix}')[2 * hidden, 0] = 1.0  # n gate <- sin(k)
        gpo.linear.weight[0, 0] = 1.0
    return gpo


@pytest.mark.parametrize('size', [1, 2, 3])
def test_hand_computed_weights_and_pooled(size):
    gpo = gpo_scoring_tanh_sin()
    scores = [math.tanh(math.sin(k)) / 0.1 for k in range(size)]
    total = sum(math.exp(s) for s in scores)
    expected_theta = [math.exp(s) / total for s in scores]
    features = torch.tensor([[3.0, -1.0], [1.0, 5.0], [2.0, 0.0]])[:size].unsqueeze(0)
    ordered = features[0].sort(dim=0, descending=True).values
    expected_pooled = sum(t * ordered[k] for k, t in enumerate(expected_theta))

    out = gpo.pool(features, torch.tensor([size]))
    pooled, weights = out.pooled, out.weights

    torch.testing.assert_close(weights[0], torch.tensor(expected_theta), atol=1e-6, rtol=0)
    torch.testing.assert_close(pooled[0], expected_pooled, atol=1e-5, rtol=0)


def test_size_one_is_the_element_itself():
    features = torch.randn(4, 5, 8)
    out = GPO().pool(features, torch.ones(4, dtype=torch.long))
    pooled, weights = out.pooled, out.weights
    torch.testing.assert_close(pooled, features[:, 0])
    assert weights.shape == (4, 1) and torch.all(weights == 1)


def test_positional_encoding_matches_design():
    encoding = sinusoid_encoding(5, 32, dtype=torch.float64)
    for k in range(5):
        for j in range(16):
            angle = k * 10000 ** (-2 * j / 32)
            assert encoding[k, 2 * j].item() == pytest.approx(math.sin(angle), abs=1e-12)
            assert encoding[k, 2 * j + 1].item() == pytest.approx(math.cos(angle), abs=1e-12)


def test_parameters_and_published_state_dict_keys():
    gpo = GPO()
    assert list(gpo.state_dict()) == PUBLISHED_KEYS
    assert sum(p.numel() for p in gpo.parameters()) == 12704
    # A VSE∞ encoder checkpoint stores the pooler under 'gpool.'.
    source = GPO()
    checkpoint = {f'gpool.{k}': v.clone() for k, v in source.state_dict().items()}
    gpo.load_state_dict({k[len('gpool.') :]: v for k, v in checkpoint.items()})
    features, lengths = torch.randn(3, 6, 4), torch.tensor([6, 2, 4])
    torch.testing.assert_close(
        gpo.pool(features, lengths).pooled, source.pool(features, lengths).pooled
    )


def random_batch(batch=9, set_len=12, dim=6):
    features = torch.randn(batch, set_len, dim)
    lengths = torch.randint(1, set_len + 1, (batch,))
    lengths[0], lengths[1] = 1, set_len
    return features, lengths


def test_equals_per_sample_formulation_with_gradients():
    gpo = GPO()
    features, lengths = random_batch()
    features.requires_grad_(True)
    out = gpo.pool(features, lengths)
    pooled, weights = out.pooled, out.weights
    ref_pooled, ref_weights = per_sample_gpo(gpo, features, lengths)
    torch.testing.assert_close(pooled, ref_pooled, atol=1e-5, rtol=0)
    torch.testing.assert_close(weights.unsqueeze(-1), ref_weights, atol=1e-5, rtol=0)

    upstream = torch.randn_like(pooled)
    ours = torch.autograd.grad((pooled * upstream).sum(), [features, *gpo.parameters()])
    refs = torch.autograd.grad((ref_pooled * upstream).sum(), [features, *gpo.parameters()])
    for mine, ref in zip(ours, refs, strict=True):
        torch.testing.assert_close(mine, ref, atol=1e-5, rtol=1e-4)


def test_equals_vse_style_batched_formulation():
    """The packed-BiGRU-over-every-sample formulation of VSE∞'s code, for outputs and
    the GRU's gradients (GPO runs the GRU step by step instead)."""
    gpo = GPO()
    features, lengths = random_batch()
    out = gpo.pool(features, lengths)
    pooled, weights = out.pooled, out.weights
    ref_pooled, ref_weights = batched_reference_gpo(gpo, features, lengths)
    torch.testing.assert_close(pooled, ref_pooled, atol=1e-5, rtol=0)
    torch.testing.assert_close(weights.unsqueeze(-1), ref_weights, atol=1e-6, rtol=0)
    ours = torch.autograd.grad(weights.pow(2).sum(), list(gpo.parameters()))
    refs = torch.autograd.grad(ref_weights.pow(2).sum(), list(gpo.parameters()))
    for mine, ref in zip(ours, refs, strict=True):
        torch.testing.assert_close(mine, ref, atol=1e-5, rtol=1e-4)


def test_weights_are_a_distribution_with_zero_padding():
    features, lengths = random_batch()
    weights = GPO().pool(features, lengths).weights
    assert weights.shape == (9, int(lengths.max()))
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(9))
    for b, n in enumerate(lengths.tolist()):
        assert torch.all(weights[b, n:] == 0)


def test_permutation_invariance_within_sets():
    gpo = GPO()
    features, lengths = random_batch()
    shuffled = features.clone()
    for b, n in enumerate(lengths.tolist()):
        shuffled[b, :n] = features[b, torch.randperm(n)]
    torch.testing.assert_close(
        gpo.pool(shuffled, lengths).pooled, gpo.pool(features, lengths).pooled
    )


def test_independent_of_batch_composition_and_padding_content():
    gpo = GPO()
    features, lengths = random_batch()
    batched = gpo.pool(features, lengths).pooled
    garbage = features.clone()
    for b, n in enumerate(lengths.tolist()):
        garbage[b, n:] = float('nan') if b % 2 else 1e30
    torch.testing.assert_close(gpo.pool(garbage, lengths).pooled, batched)
    for b in range(len(lengths)):
        alone = gpo.pool(features[b : b + 1, : lengths[b]], lengths[b : b + 1]).pooled
        torch.testing.assert_close(alone[0], batched[b], atol=1e-6, rtol=0)


def test_values_below_minus_ten_thousand_pool_correctly():
    gpo = GPO().double()
    features, lengths = random_batch()
    features = features.double() * 1e3 - 1e6
    pooled = gpo.pool(features, lengths).pooled
    torch.testing.assert_close(pooled, per_sample_gpo(gpo, features, lengths)[0], atol=1e-6, rtol=0)
    assert torch.all(pooled < -9e5)


def test_nan_stays_in_its_sample():
    features, lengths = random_batch()
    features[3, 0, 2] = float('nan')
    lengths[3] = max(int(lengths[3]), 1)
    pooled = GPO().pool(features, lengths).pooled
    assert torch.isnan(pooled[3]).any()
    others = torch.cat([pooled[:3], pooled[4:]])
    assert torch.isfinite(others).all()


def test_gradcheck_float64():
    gpo = GPO(d_pe=4, d_hidden=3).double()
    features = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 1, 3])

    def pooled(x, *params):
        return torch.func.functional_call(gpo, dict(zip(names, params, strict=True)), (x, lengths))

    names = [n for n, _ in gpo.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in gpo.parameters()]
    assert gradcheck(pooled, (features, *params), eps=1e-6, atol=1e-5)


def test_eval_cache_matches_and_is_invalidated():
    gpo = GPO()
    features, lengths = random_batch()
    train_out = gpo.pool(features, lengths).pooled.detach()
    gpo.eval()
    with torch.no_grad():
        first = gpo.pool(features, lengths).pooled
        assert len(gpo._weights_cache) == len(torch.unique(lengths))
        second = gpo.pool(features, lengths).pooled
        gpo.load_state_dict(GPO().state_dict())
        assert not gpo._weights_cache
        changed = gpo.pool(features, lengths).pooled
    torch.testing.assert_close(first, train_out)
    torch.testing.assert_close(second, first)
    assert not torch.allclose(changed, first)
    torch.testing.assert_close(
        changed, per_sample_gpo(gpo, features, lengths)[0], atol=1e-5, rtol=0
    )
    gpo.train()
    assert not gpo._weights_cache


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast_weights_in_fp32_and_outputs_finite(dtype):
    gpo = GPO()
    features, lengths = random_batch()
    with torch.autocast('cpu', dtype=dtype):
        out = gpo.pool(features.to(dtype), lengths)
        pooled, weights = out.pooled, out.weights
        pooled.float().sum().backward()
    assert weights.dtype == torch.float32
    torch.testing.assert_close(weights, gpo.pool(features, lengths).weights)
    assert torch.isfinite(pooled).all()
    assert all(torch.isfinite(p.grad).all() for p in gpo.parameters())
    torch.testing.assert_close(
        pooled.float(), gpo.pool(features, lengths).pooled, atol=0.1, rtol=0.02
    )


def test_neck_conventions():
    gpo = GPO()
    maps = (torch.randn(2, 5, 3, 4), torch.randn(2, 7, 2, 2))
    outs = gpo(maps)
    assert isinstance(outs, tuple) and [o.shape for o in outs] == [(2, 5), (2, 7)]
    flat = maps[0].flatten(2).transpose(1, 2)
    torch.testing.assert_close(outs[0], gpo.pool(flat).pooled)
    torch.testing.assert_close(gpo(maps[0]), outs[0])
    features, lengths = random_batch()
    torch.testing.assert_close(gpo(features, lengths), gpo.pool(features, lengths).pooled)


@pytest.mark.parametrize(
    'features, lengths, error, words',
    [
        (torch.randn(2, 3, 4), torch.tensor([0, 2]), ValueError, 'lengths[0] = 0'),
        (torch.randn(2, 3, 4), torch.tensor([2, 5]), ValueError, 'lengths[1] = 5 exceeds'),
        (torch.randn(2, 3, 4), torch.tensor([-1, 2]), ValueError, 'at least one'),
        (torch.randn(2, 3, 4), torch.tensor([1.0, 2.0]), TypeError, 'integers'),
        (torch.randn(2, 3, 4), [1.5, 2], TypeError, '1.5'),
        (torch.randn(2, 3, 4), torch.tensor([1, 2, 3]), ValueError, 'shape (B,) = (2,)'),
        (torch.randn(2, 3), None, ValueError, '(B, L, D)'),
        (torch.randn(2, 3, 4, 5), None, ValueError, '(B, L, D)'),
        ([[1.0]], None, TypeError, 'torch.Tensor'),
        (torch.randn(2, 0, 4), None, ValueError, 'lengths[0] = 0'),
        (torch.randn(0, 3, 4), None, ValueError, 'no samples'),
    ],
)
def test_bad_input_errors(features, lengths, error, words):
    with pytest.raises(error) as info:
        GPO().pool(features, lengths)
    assert words in str(info.value) and 'GPO.pool' in str(info.value)


def test_list_lengths_are_accepted():
    features = torch.randn(2, 3, 4)
    gpo = GPO()
    torch.testing.assert_close(
        gpo.pool(features, [1, 3]).pooled, gpo.pool(features, torch.tensor([1, 3])).pooled
    )


def test_forward_rejects_non_map_inputs():
    with pytest.raises(ValueError, match=r'\(B, C, H, W\)'):
        GPO()((torch.randn(2, 3, 4),))
