"""Retrieval ranks and metric against the per-row argsort reference (docs/vse.md#evaluation-protocol)."""

import numpy as np
import pytest
import torch

from gpo_plugin.evaluation import VSERetrievalMetric, format_retrieval_table
from gpo_plugin.evaluation.functional import retrieval_ranks, summarize_ranks

from references.retrieval import (
    reference_evaluation,
    reference_ranks,
    reference_summary,
)


def random_embeddings(n_img, n_txt, dim=16, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    img = torch.nn.functional.normalize(torch.randn(n_img, dim, generator=gen, dtype=dtype), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(n_txt, dim, generator=gen, dtype=dtype), dim=1)
    return img, txt


def correlated(n_img, k, dim=16, seed=0):
    """Captions near their image, so ranks spread over the whole range (not all large)."""
    img, noise = random_embeddings(n_img, n_img * k, dim, seed)
    txt_img = torch.arange(n_img).repeat_interleave(k)
    txt = torch.nn.functional.normalize(img[txt_img] + 0.9 * noise, dim=1)
    return img, txt, txt_img


def assert_no_ties(sims):
    flat = np.sort(sims.ravel())
    assert np.all(np.diff(flat) > 0), 'test data must be tie-free'


@pytest.mark.parametrize('chunk_size', [7, 1024])
def test_ranks_equal_argsort_definition(chunk_size):
    img, txt, txt_img = correlated(60, 5)
    sims = (img @ txt.t()).numpy()
    assert_no_ties(sims)
    i2t, t2i, _, _ = retrieval_ranks(img, txt, txt_img, chunk_size=chunk_size)
    ref_i2t, ref_t2i = reference_ranks(img.numpy(), txt.numpy(), txt_img.numpy())
    assert np.array_equal(i2t.numpy(), ref_i2t) and np.array_equal(t2i.numpy(), ref_t2i)
    assert 0 < (t2i == 0).sum() < len(t2i)  # the data exercises both hits and misses


def test_ranks_with_uneven_captions_per_image_and_shuffled_order():
    gen = torch.Generator().manual_seed(3)
    counts = torch.randint(1, 8, (40,), generator=gen)
    txt_img = torch.arange(40).repeat_interleave(counts)
    txt_img = txt_img[torch.randperm(len(txt_img), generator=gen)]
    img, noise = random_embeddings(40, len(txt_img), seed=4)
    txt = torch.nn.functional.normalize(img[txt_img] + noise, dim=1)
    i2t, t2i, _, _ = retrieval_ranks(img, txt, txt_img, chunk_size=9)
    ref = reference_ranks(img.numpy(), txt.numpy(), txt_img.numpy())
    assert np.array_equal(i2t.numpy(), ref[0]) and np.array_equal(t2i.numpy(), ref[1])


@pytest.mark.parametrize('chunk_size', [7, 20, 500])
def test_fold_ranks_equal_argsort_within_each_fold(chunk_size):
    img, txt, txt_img = correlated(60, 3, seed=2)
    perm = torch.randperm(len(txt), generator=torch.Generator().manual_seed(0))
    txt, txt_img = txt[perm], txt_img[perm]  # captions in any order
    ranks = retrieval_ranks(img, txt, txt_img, chunk_size=chunk_size, fold_size=20)
    full = reference_ranks(img.numpy(), txt.numpy(), txt_img.numpy())
    assert np.array_equal(ranks.i2t.numpy(), full[0])
    assert np.array_equal(ranks.t2i.numpy(), full[1])
    for f in range(3):
        keep = (txt_img >= 20 * f) & (txt_img < 20 * (f + 1))
        ref = reference_ranks(
            img[20 * f : 20 * (f + 1)].numpy(), txt[keep].numpy(), (txt_img[keep] - 20 * f).numpy()
        )
        assert np.array_equal(ranks.fold_i2t[20 * f : 20 * (f + 1)].numpy(), ref[0])
        assert np.array_equal(ranks.fold_t2i[keep].numpy(), ref[1])
    assert (ranks.fold_t2i <= ranks.t2i).all() and (ranks.fold_t2i < ranks.t2i).any()
    with pytest.raises(ValueError, match='fold_size=7 must divide'):
        retrieval_ranks(img, txt, txt_img, fold_size=7)


def test_summary_matches_reference_and_hand_case():
    i2t, t2i = torch.tensor([0, 4, 9, 30]), torch.tensor([0, 0, 1, 5, 12, 2])
    got = summarize_ranks(i2t, t2i)
    ref = reference_summary(i2t.numpy(), t2i.numpy())
    assert got == pytest.approx(ref)
    # By hand: i2t R@1 = 1/4, R@5 = 2/4, R@10 = 3/4, median(0,4,9,30) = 6.5 -> 7, mean+1 = 11.75.
    assert (got['i2t_R@1'], got['i2t_R@5'], got['i2t_R@10']) == (25.0, 50.0, 75.0)
    assert got['i2t_medr'] == 7 and got['i2t_meanr'] == pytest.approx(11.75)
    assert got['rsum'] == pytest.approx(25 + 50 + 75 + 100 * (2 / 6 + 4 / 6 + 5 / 6))


def test_ranks_bad_input():
    img, txt = random_embeddings(3, 6)
    with pytest.raises(ValueError, match='txt_img must be'):
        retrieval_ranks(img, txt, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match='index rows'):
        retrieval_ranks(img, txt, torch.full((6,), 3))
    with pytest.raises(ValueError, match='at least one caption'):
        retrieval_ranks(img, txt, torch.zeros(6, dtype=torch.long))


def run_metric(img, txt, txt_img, fold_size=None, order=None, duplicate=0):
    metric = VSERetrievalMetric(fold_size=fold_size, chunk_size=64)
    order = range(len(txt)) if order is None else order
    preds = [
        dict(img_emb=img[txt_img[c]], txt_emb=txt[c], img_idx=int(txt_img[c]), cap_idx=c)
        for c in order
    ]
    preds += preds[:duplicate]  # a distributed sampler pads with repeats
    for start in range(0, len(preds), 50):
        metric.process(None, preds[start : start + 50])
    return metric.compute_metrics(metric.results)


def test_metric_5k_style_with_folds_equals_reference():
    # A scaled-down COCO testall: 500 images x 5 captions, the full set and 5 folds of 100.
    img, txt, txt_img = correlated(500, 5, dim=32, seed=1)
    perm = np.random.default_rng(0).permutation(len(txt))
    got = run_metric(img.float(), txt.float(), txt_img, fold_size=100, order=perm, duplicate=7)
    ref = reference_evaluation(
        img.float().numpy(), txt.float().numpy(), txt_img.numpy(), fold_size=100
    )
    assert set(ref) <= set(got) and got['tie_rule'] == 'published'
    for f in range(5):  # each fold's numbers are there, and their mean is the fold result
        assert got[f'fold100_{f}_rsum'] >= 100
    mean = np.mean([got[f'fold100_{f}_i2t_R@1'] for f in range(5)])
    assert got['fold100_i2t_R@1'] == pytest.approx(mean)
    for key in ref:
        assert got[key] == ref[key], key
    assert 100 < got['rsum'] < 600 and got['fold100_rsum'] > got['rsum']


def test_metric_logs_table_and_skips_uneven_folds():
    img, txt, txt_img = correlated(30, 2)
    got = run_metric(img, txt, txt_img, fold_size=20)
    assert not any(k.startswith('fold') for k in got)
    table = format_retrieval_table(got, 30, 60)
    assert 'rSum' in table and f'{got["rsum"]:6.1f}' in table
    assert 'all (30 img)' in table
