"""Retrieval ranks with ties: each tie rule against its own independent formulation.

The scores are the published code's: its ``encode_data`` copies the float32 embeddings into
float64 arrays and ``compute_sim`` multiplies them (``published_sims`` below). The oracle of
the default rule is the published evaluation loop written out here: for each image
``np.argsort`` of its float64 score row, reversed, best position of its captions; for each
caption the position of its image in the reversed argsort of its column; the folds on the
sub-matrix of each fold. Data with ties: duplicate captions, quantised and bfloat16
embeddings, near-ties one float32 ulp apart (float32 and float64 orders differ), random tie
and near-tie patterns with hypothesis.
"""

import importlib
from unittest import mock

import numpy as np
import pytest
import torch
from conftest import oracle, rule_loop
from hypothesis import given, settings
from hypothesis import strategies as st

from gpo_plugin.evaluation import VSERetrievalMetric
from gpo_plugin.evaluation.functional import retrieval_ranks, topk_by_rule

ranks_module = importlib.import_module('gpo_plugin.evaluation.functional.retrieval_ranks')
# Band rescoring: 0 scores every band candidate on its own, 10**9 gives every row (column)
# of a block with candidates its float64 scores at once; on the near-tie set 64 mixes both
# ways for the rows and 4 for the columns (and the property test draws all four).
DENSE_SHARES = {'pairs': 0, 'dense': 10**9, 'mixed rows': 64, 'mixed columns': 4}


def band_rescoring(mode: str):
    return mock.patch.object(ranks_module, '_DENSE_SHARE', DENSE_SHARES[mode])


def published_sims(img, txt):
    """``compute_sim`` of the published code on its float64 copies of float32 embeddings."""
    img64 = img.float().numpy().astype(np.float64)
    return np.matmul(img64, txt.float().numpy().astype(np.float64).T)


def check(img, txt, txt_img, rule='published', fold_size=None, chunk_size=7):
    """Our ranks equal the oracle on the published float64 scores, full set and each fold."""
    sims = published_sims(img, txt)
    got = retrieval_ranks(img, txt, txt_img, chunk_size, fold_size, tie_rule=rule)
    ti = txt_img.numpy()
    want = oracle(sims, ti, rule)
    assert np.array_equal(got.i2t.numpy(), want[0]), (got.i2t, want[0])
    assert np.array_equal(got.t2i.numpy(), want[1]), (got.t2i, want[1])
    for lo in range(0, len(img), fold_size or len(img) + 1):
        keep = (ti >= lo) & (ti < lo + fold_size)
        f_want = oracle(sims[lo : lo + fold_size][:, keep], ti[keep] - lo, rule)
        assert np.array_equal(got.fold_i2t[lo : lo + fold_size].numpy(), f_want[0])
        assert np.array_equal(got.fold_t2i.numpy()[keep], f_want[1])
    return got


def duplicated_captions(n_img=60, k=5, dim=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    img = torch.nn.functional.normalize(torch.randn(n_img, dim, generator=gen), dim=1)
    txt_img = torch.arange(n_img).repeat_interleave(k)
    txt = torch.nn.functional.normalize(
        img[txt_img] + torch.randn(n_img * k, dim, generator=gen), dim=1
    )
    # A third of the captions repeat another image's caption exactly (COCO's duplicates).
    copies = torch.randperm(n_img * k, generator=gen)[: n_img * k // 3]
    sources = torch.randint(0, n_img * k, (len(copies),), generator=gen)
    txt[copies] = txt[sources]
    return img, txt, txt_img


@pytest.mark.parametrize('mode', DENSE_SHARES)
@pytest.mark.parametrize('rule', ['published', 'optimistic', 'pessimistic'])
def test_duplicate_captions_5k_and_folds(rule, mode):
    img, txt, txt_img = duplicated_captions()
    with band_rescoring(mode):
        got = check(img, txt, txt_img, rule, fold_size=20)
    assert got.t2i.float().mean() > 0  # not a trivial all-hit case


def test_rules_differ_where_ties_are_and_order_as_expected():
    img, txt, txt_img = duplicated_captions(seed=1)
    ranks = {
        r: retrieval_ranks(img, txt, txt_img, tie_rule=r)
        for r in ('optimistic', 'published', 'pessimistic')
    }
    # Duplicate captions tie within an image's row: the image-to-text ranks differ.
    assert (ranks['optimistic'].i2t <= ranks['published'].i2t).all()
    assert (ranks['published'].i2t <= ranks['pessimistic'].i2t).all()
    assert (ranks['optimistic'].i2t < ranks['published'].i2t).any()
    assert (ranks['published'].i2t < ranks['pessimistic'].i2t).any()


@pytest.mark.parametrize('rule', ['published', 'optimistic', 'pessimistic'])
def test_quantised_embeddings_shuffled_captions(rule):
    gen = torch.Generator().manual_seed(2)
    img = torch.randint(-2, 3, (40, 6), generator=gen).float() / 4
    txt_img = torch.arange(40).repeat_interleave(3)
    perm = torch.randperm(120, generator=gen)
    txt = (torch.randint(-2, 3, (120, 6), generator=gen).float() / 4)[perm]
    check(img, txt, txt_img[perm], rule, fold_size=10, chunk_size=3)


@pytest.mark.parametrize('rule', ['published', 'optimistic', 'pessimistic'])
def test_bfloat16_embeddings(rule):
    img, txt, txt_img = duplicated_captions(n_img=50, dim=8, seed=3)
    check(img.bfloat16(), txt.bfloat16(), txt_img, rule, fold_size=10, chunk_size=16)


def test_nan_scores_follow_argsort():
    img, txt, txt_img = duplicated_captions(n_img=20, dim=8, seed=4)
    img[3, 0] = float('nan')
    txt[7, 2] = float('nan')
    check(img, txt, txt_img, 'published', fold_size=10)


embedding = st.integers(-1, 1)
nudge = st.sampled_from([-10.0, 10.0])


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    n_folds=st.integers(1, 3),
    fold_size=st.integers(1, 5),
    dim=st.integers(1, 3),
    rule=st.sampled_from(['published', 'optimistic', 'pessimistic']),
    chunk_size=st.integers(1, 6),
    mode=st.sampled_from(list(DENSE_SHARES)),
)
def test_random_tie_patterns(data, n_folds, fold_size, dim, rule, chunk_size, mode):
    n_img = n_folds * fold_size
    counts = data.draw(st.lists(st.integers(1, 3), min_size=n_img, max_size=n_img))
    txt_img = torch.arange(n_img).repeat_interleave(torch.tensor(counts))
    perm = torch.tensor(data.draw(st.permutations(range(len(txt_img)))), dtype=torch.long)
    txt_img = txt_img[perm]
    vals = st.lists(embedding, min_size=dim, max_size=dim)
    img = torch.tensor(
        data.draw(st.lists(vals, min_size=n_img, max_size=n_img)), dtype=torch.float32
    )
    txt = torch.tensor(
        data.draw(st.lists(vals, min_size=len(txt_img), max_size=len(txt_img))), dtype=torch.float32
    )
    # Near-ties: entries moved by one float32 ulp (scores tie or order otherwise in float32).
    for emb in (img, txt):
        emb += 0.3
        for row in data.draw(st.lists(st.integers(0, len(emb) - 1), max_size=len(emb))):
            emb[row, 0] = torch.nextafter(emb[row, 0], torch.tensor(data.draw(nudge)))
    if rule == 'published' and data.draw(st.booleans()):  # argsort orders NaN; sorted() not
        txt[data.draw(st.integers(0, len(txt) - 1)), 0] = float('nan')
    with band_rescoring(mode):
        check(img, txt, txt_img, rule, fold_size=fold_size, chunk_size=chunk_size)


def test_metric_reports_rule_and_rejects_unknown():
    img, txt, txt_img = duplicated_captions(n_img=20)
    metric = VSERetrievalMetric(tie_rule='pessimistic')
    got = metric.evaluate_embeddings(img, txt, txt_img)
    want = rule_loop(published_sims(img, txt), txt_img.numpy(), truth_first=False)
    assert got['tie_rule'] == 'pessimistic'
    assert got['t2i_R@1'] == 100.0 * np.mean(want[1] < 1)
    with pytest.raises(ValueError, match='tie_rule must be one of'):
        VSERetrievalMetric(tie_rule='stable')


def test_topk_published_order_is_argsort_of_the_float64_row():
    img, txt, _ = duplicated_captions(n_img=20)
    values, indices = topk_by_rule(img, txt, 7)
    sims = published_sims(img, txt)
    want = np.argsort(sims, axis=1)[:, ::-1][:, :7]
    assert np.array_equal(indices.numpy(), want)
    # float64 sums in another order than numpy's: equal to float64 rounding
    np.testing.assert_allclose(values.numpy(), np.take_along_axis(sims, want, 1), atol=1e-12)
    _, stable = topk_by_rule(torch.ones(1, 2), torch.ones(5, 2), 3, 'optimistic')
    assert stable.tolist() == [[0, 1, 2]]


def near_ties(n_img=40, k=5, dim=64, seed=6):
    """Captions with a copy one float32 ulp away (another image's caption), and images with
    such a copy: float32 scores tie or misorder where float64 ones do not."""
    gen = torch.Generator().manual_seed(seed)
    img = torch.nn.functional.normalize(torch.rand(n_img, dim, generator=gen) + 0.2, dim=1)
    txt_img = torch.arange(n_img).repeat_interleave(k)
    txt = torch.nn.functional.normalize(
        img[txt_img] + 0.05 * torch.rand(n_img * k, dim, generator=gen), dim=1
    )
    half = n_img * k // 2
    txt[half:] = txt[:half]  # caption c + half: a copy of caption c, then nudged
    img[n_img // 2 :] = img[: n_img // 2]
    direction = torch.tensor([10.0, -10.0])
    for c in range(half, n_img * k):
        col = c % dim
        txt[c, col] = torch.nextafter(txt[c, col], direction[c % 2])
    for i in range(n_img // 2, n_img):
        img[i, i % dim] = torch.nextafter(img[i, i % dim], direction[i % 2])
    return img, txt, txt_img


@pytest.mark.parametrize('mode', DENSE_SHARES)
@pytest.mark.parametrize('rule', ['published', 'optimistic', 'pessimistic'])
def test_near_ties_follow_the_float64_scores(rule, mode):
    """Fails if the float64 recheck is removed: on these embeddings the float32 product
    gives other ranks (asserted), ours equal the float64 oracle."""
    img, txt, txt_img = near_ties()
    with band_rescoring(mode):
        got = check(img, txt, txt_img, rule, fold_size=20, chunk_size=9)
    float32 = oracle((img @ txt.t()).numpy(), txt_img.numpy(), rule)
    assert not (
        np.array_equal(got.i2t.numpy(), float32[0]) and np.array_equal(got.t2i.numpy(), float32[1])
    )


def test_near_ties_without_the_float64_recheck_differ(monkeypatch):
    """The band candidates must be rescored in float64: scoring them in float32 instead
    (what the float32 count alone would give) changes the ranks on the near-tie data."""
    import importlib

    module = importlib.import_module('gpo_plugin.evaluation.functional.retrieval_ranks')
    img, txt, txt_img = near_ties()
    right = retrieval_ranks(img, txt, txt_img, 9, 20)

    def float32_pairs(img, txt, image, caption):
        return (img[image] * txt[caption]).sum(dim=1).double()

    monkeypatch.setattr(module, '_pair_scores', float32_pairs)
    monkeypatch.setattr(module, '_DENSE_SHARE', 0)  # every band pair through _pair_scores
    monkeypatch.setattr(module, 'published_scores', lambda a, b: (a.float() @ b.float().T).numpy())
    wrong = retrieval_ranks(img, txt, txt_img, 9, 20)
    assert not (torch.equal(right.i2t, wrong.i2t) and torch.equal(right.t2i, wrong.t2i))


def test_reduced_precision_matmul_widens_the_band():
    from gpo_plugin.evaluation.functional.retrieval_ranks import unit_roundoff

    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision('medium')
        assert unit_roundoff(torch.zeros(1)) == 2.0**-8
        img, txt, txt_img = near_ties(n_img=10, dim=16)
        check(img, txt, txt_img, 'published', fold_size=5)
    finally:
        torch.set_float32_matmul_precision(previous)
    assert unit_roundoff(torch.zeros(1, dtype=torch.float64)) == 2.0**-53
