"""Property tests (hypothesis) of every pooler and loss: random shapes, set lengths 1..L,
duplicated and all-equal values, extreme magnitudes, float16/bfloat16, padding filled with
NaN/inf. Finite input gives finite output that agrees with a float64 reference written
independently here; invalid input gives the documented errors (docs/fault_tolerance.md)."""

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpo_plugin.models.losses import VSEContrastiveLoss, ZeroShotLoss
from gpo_plugin.models.necks import GPO, GSP, AvgPooling, GeMPooling, KMaxPooling, MaxPooling

from references.gpo import per_sample_gpo

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
# Largest magnitude each dtype's poolers must stay finite for (sums of up to L terms of weight
# <= 1; GeM's power p = 3 needs |x|^3 representable, hence its own bound).
MAGNITUDE = {torch.float32: 1e30, torch.float16: 1e3, torch.bfloat16: 1e30}
GEM_MAGNITUDE = {torch.float32: 1e12, torch.float16: 30.0, torch.bfloat16: 1e12}
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}


@st.composite
def padded_sets(draw, magnitude=MAGNITUDE, positive=False):
    """(features (B, L, D), lengths (B,), dtype, padding value)."""
    dtype = draw(st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
    batch, set_len, dim = draw(st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 5)))
    lengths = draw(st.lists(st.integers(1, set_len), min_size=batch, max_size=batch))
    kind = draw(st.sampled_from(['normal', 'duplicates', 'all_equal', 'extreme', 'tiny']))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (batch, set_len, dim)
    if kind == 'normal':
        values = rng.normal(size=shape)
    elif kind == 'duplicates':
        values = rng.choice([-1.0, 0.0, 0.5, 2.0], size=shape)
    elif kind == 'all_equal':
        values = np.full(shape, rng.normal())
    elif kind == 'extreme':
        values = rng.choice([-1.0, 1.0], size=shape) * magnitude[dtype] * rng.uniform(0.5, 1, shape)
    else:
        values = rng.normal(size=shape) * 1e-30
    if positive:
        values = np.abs(values)
    features = torch.tensor(values, dtype=dtype)
    padding = draw(st.sampled_from([0.0, math.nan, math.inf, -math.inf]))
    lengths = torch.tensor(lengths)
    for b, n in enumerate(lengths.tolist()):
        features[b, n:] = padding
    return features, lengths, dtype


def reference(fn, features, lengths):
    """``fn`` applied to each sample's valid rows, in float64."""
    return torch.stack(
        [fn(x[:n].double()) for x, n in zip(features, lengths.tolist(), strict=True)]
    )


def assert_agrees(pooled, expected, dtype, features, lengths):
    scale = max(
        1.0,
        max(
            float(x[:n].double().abs().max())
            for x, n in zip(features, lengths.tolist(), strict=True)
        ),
    )
    assert torch.isfinite(pooled).all(), pooled
    error = (pooled.double() - expected).abs().max().item()
    assert error <= TOLERANCE[dtype] * scale, (error, scale)


REFERENCES = {
    'avg': (AvgPooling, lambda x: x.mean(0)),
    'max': (MaxPooling, lambda x: x.max(0).values),
    'kmax': (lambda: KMaxPooling(k=3), lambda x: x.sort(0, descending=True).values[:3].mean(0)),
}


@pytest.mark.parametrize('name', sorted(REFERENCES))
@SETTINGS
@given(data=padded_sets())
def test_simple_poolers(name, data):
    features, lengths, dtype = data
    make, fn = REFERENCES[name]
    out = make().pool(features, lengths)
    pooled, weights = out.pooled, out.weights
    assert pooled.dtype == dtype and pooled.shape == features.shape[::2]
    assert_agrees(pooled, reference(fn, features, lengths), dtype, features, lengths)
    torch.testing.assert_close(
        weights.sum(1).double(), torch.ones(len(lengths)).double(), atol=1e-2, rtol=0
    )


@SETTINGS
@given(data=padded_sets(magnitude=GEM_MAGNITUDE, positive=True), p=st.sampled_from([1.0, 2.0, 3.0]))
def test_gem(data, p):
    features, lengths, dtype = data
    # p stays float32 (as under autocast): a bfloat16 p = 3 has 1/p off by 0.2 %, which
    # x^(p * 1/p) turns into several percent for large x.
    gem = GeMPooling(p=p)
    pooled = gem.pool(features, lengths).pooled
    expected = reference(lambda x: x.clamp(min=1e-6).pow(p).mean(0).pow(1 / p), features, lengths)
    assert_agrees(pooled, expected, dtype, features, lengths)


@SETTINGS
@given(data=padded_sets())
def test_gpo_against_per_sample_float64(data):
    features, lengths, dtype = data
    gpo = GPO(d_pe=8, d_hidden=8)
    out = gpo.pool(features, lengths)
    pooled, weights = out.pooled, out.weights
    gpo64 = copy.deepcopy(gpo).double()
    clean = features.double().nan_to_num(0.0, 0.0, 0.0)
    expected, expected_weights = per_sample_gpo(gpo64, clean, lengths)
    assert_agrees(pooled, expected, dtype, features, lengths)
    torch.testing.assert_close(weights.unsqueeze(-1).double(), expected_weights, atol=1e-5, rtol=0)


@pytest.mark.slow  # ~1 s an example (float64 transport solves)
@settings(SETTINGS, max_examples=15)
@given(
    batch=st.integers(1, 3),
    side=st.integers(1, 3),
    kind=st.sampled_from(['normal', 'all_equal', 'extreme', 'tiny']),
    mu=st.sampled_from([0.1, 0.3, 1.0]),
    gamma=st.sampled_from([0.5, 5.0, 50.0]),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
    seed=st.integers(0, 2**16),
)
def test_gsp_finite_weights_and_float64_agreement(batch, side, kind, mu, gamma, dtype, seed):
    torch.manual_seed(seed)
    gsp = GSP(in_channels=3, out_channels=4, num_prototypes=3, transport_ratio=mu, gamma=gamma)
    gsp.kcenter_init = False
    gsp.prototypes_initialised.fill_(True)
    maps = {
        'normal': torch.randn(batch, 3, side, side),
        'all_equal': torch.full((batch, 3, side, side), 0.7),
        # GSP's unit-ball projection squares norms: float32 holds |x| up to ~1e19 there.
        'extreme': torch.randn(batch, 3, side, side).sign() * min(MAGNITUDE[dtype], 1e15),
        'tiny': torch.randn(batch, 3, side, side) * 1e-30,
    }[kind].to(dtype)
    out = gsp.eval().pool_map(maps)
    assert torch.isfinite(out.pooled).all() and torch.isfinite(out.weights).all()
    weights = out.weights.flatten(1).double()
    assert (weights >= -1e-6).all() and (weights <= 1 / mu + 1e-6).all()
    torch.testing.assert_close(weights.mean(1), torch.ones(batch).double(), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        out.attributes.sum(1).double(), torch.ones(batch).double(), atol=1e-5, rtol=0
    )
    ref = copy.deepcopy(gsp).double().pool_map(maps.double())
    scale = max(1.0, float(maps.double().abs().max()))
    error = (out.pooled.double() - ref.pooled).abs().max().item()
    assert error <= 1e-4 * scale * float(gsp.proj.weight.abs().sum(1).max()), error


def test_poolers_documented_errors():
    """Invalid input: the errors check_set_input documents (shape, dtype, lengths)."""
    for pooler in (AvgPooling(), MaxPooling(), KMaxPooling(), GeMPooling(), GPO()):
        name = type(pooler).__name__
        with pytest.raises(ValueError, match=rf'{name}.pool: every set needs at least one'):
            pooler.pool(torch.rand(2, 3, 4), torch.tensor([0, 2]))
        with pytest.raises(ValueError, match=rf'{name}.pool: lengths\[1\] = 4 exceeds'):
            pooler.pool(torch.rand(2, 3, 4), torch.tensor([1, 4]))
        with pytest.raises(TypeError, match=rf'{name}.pool: `features` must be a floating'):
            pooler.pool(torch.ones(2, 3, 4, dtype=torch.long))


# -- losses ----------------------------------------------------------------------------------------


def contrastive_reference(im, s, margin, hardest):
    """VSE++ hinge loss with explicit loops in float64."""
    im, s = im.double().numpy(), s.double().numpy()
    scores = im @ s.T
    n = len(scores)
    cost_s = [
        [max(0.0, margin + scores[i, j] - scores[i, i]) for j in range(n) if j != i]
        for i in range(n)
    ]
    cost_im = [
        [max(0.0, margin + scores[i, j] - scores[j, j]) for i in range(n) if i != j]
        for j in range(n)
    ]
    if hardest:
        return sum(max(row, default=0.0) for row in cost_s) + sum(
            max(c, default=0.0) for c in cost_im
        )
    return sum(map(sum, cost_s)) + sum(map(sum, cost_im))


@SETTINGS
@given(
    batch=st.integers(1, 6),
    dim=st.integers(1, 5),
    kind=st.sampled_from(['normal', 'duplicates', 'all_equal', 'extreme']),
    hardest=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_contrastive_loss(batch, dim, kind, hardest, seed):
    rng = np.random.default_rng(seed)
    values = {
        'normal': lambda: rng.normal(size=(batch, dim)),
        'duplicates': lambda: np.tile(rng.normal(size=(1, dim)), (batch, 1)),
        'all_equal': lambda: np.full((batch, dim), 0.3),
        'extreme': lambda: rng.normal(size=(batch, dim)) * 1e15,
    }[kind]
    im, s = torch.tensor(values(), dtype=torch.float32), torch.tensor(values(), dtype=torch.float32)
    loss = VSEContrastiveLoss(margin=0.2, max_violation=hardest)(im, s)
    expected = contrastive_reference(im, s, 0.2, hardest)
    assert math.isfinite(loss.item())
    assert loss.item() == pytest.approx(expected, rel=1e-4, abs=1e-4 * max(1.0, abs(expected)))


def zero_shot_reference(loss, attributes, labels):
    """Ridge regression from one half's attributes to its class embeddings, predicting the
    other half's classes, both directions, in float64 (primal form)."""
    a = attributes.double().numpy()
    e = loss.class_embeddings.detach().double().numpy()
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    y = labels.numpy()
    half = len(y) // 2
    total = 0.0
    for fit, pred in ((slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))):
        x = a[fit]
        w = np.linalg.solve(x.T @ x + loss.ridge * np.eye(x.shape[1]), x.T @ e[y[fit]])
        logits = loss.scale * (a[pred] @ w) @ e.T
        logits -= logits.max(1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        total += -log_p[np.arange(len(y[pred])), y[pred]].mean()
    return loss.loss_weight * total / 2


@SETTINGS
@given(
    half=st.integers(1, 4),
    m=st.integers(1, 6),
    kind=st.sampled_from(['normal', 'one_hot', 'all_equal']),
    seed=st.integers(0, 2**16),
)
def test_zero_shot_loss(half, m, kind, seed):
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    num_classes = 4
    labels = torch.tensor(list(rng.choice([0, 1], size=half)) + list(rng.choice([2, 3], size=half)))
    if kind == 'normal':
        attributes = rng.dirichlet(np.ones(m), size=2 * half)
    elif kind == 'one_hot':
        attributes = np.eye(m)[rng.integers(0, m, size=2 * half)]
    else:
        attributes = np.full((2 * half, m), 1 / m)
    attributes = torch.tensor(attributes, dtype=torch.float32)
    loss = ZeroShotLoss(num_classes=num_classes, embed_dim=5)
    value = loss(attributes, labels)
    assert math.isfinite(value.item())
    assert value.item() == pytest.approx(
        zero_shot_reference(loss, attributes, labels), rel=1e-3, abs=1e-5
    )


def test_losses_documented_errors():
    with pytest.raises(ValueError, match='VSEContrastiveLoss: image and caption embeddings'):
        VSEContrastiveLoss()(torch.rand(3, 4), torch.rand(2, 4))
    with pytest.raises(ValueError, match='ZeroShotLoss: the batch size must be even'):
        ZeroShotLoss(num_classes=3, embed_dim=4)(torch.rand(3, 2), torch.tensor([0, 1, 2]))
