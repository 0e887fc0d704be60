"""tools/analysis_tools/eval_ensemble.py: averaging similarity matrices, evaluated as the published
eval_ensemble (its loops written out here), reading published files without unpickling code."""

import json
import os

import numpy as np
import pytest
from conftest import oracle, published_loop

from gpo_plugin.evaluation.ensemble import (
    SimilarityFileError,
    evaluate_similarities,
    load_similarity_file,
)

from eval_ensemble import main
from references.retrieval import reference_summary


def published_summary(sims):
    """The published eval_ensemble on an averaged (npts, 5 npts) matrix: ranks by argsort."""
    return reference_summary(*published_loop(sims, np.arange(sims.shape[0]).repeat(5)))


def quantised_sims(seed, n_img=20):
    rng = np.random.default_rng(seed)
    return (rng.integers(-3, 4, size=(n_img, 5 * n_img)) / 4).astype(np.float32)


@pytest.mark.parametrize('fold5', [False, True])
def test_ensemble_equals_published(tmp_path, fold5):
    a, b = quantised_sims(0), quantised_sims(1)
    np.save(tmp_path / 'a.npy', {'npts': 20, 'sims': a})  # the published file layout
    np.savez(tmp_path / 'b.npz', sims=b, txt_img=np.arange(20).repeat(5))
    got = main(
        [str(tmp_path / 'a.npy'), str(tmp_path / 'b.npz'), '--out', str(tmp_path / 'o.json')]
        + (['--fold5'] if fold5 else [])
    )
    avg = np.array([a, b]).mean(axis=0)
    for key, value in published_summary(avg).items():
        assert got[key] == value, key
    if fold5:
        folds = [
            published_summary(avg[i * 4 : (i + 1) * 4, i * 20 : (i + 1) * 20]) for i in range(5)
        ]
        for key in folds[0]:
            assert got[f'fold4_{key}'] == pytest.approx(np.mean([f[key] for f in folds]))
            assert got[f'fold4_2_{key}'] == folds[2][key]
    assert json.loads((tmp_path / 'o.json').read_text())['metrics']['tie_rule'] == 'published'


def test_refuses_different_sizes_and_single_file(tmp_path):
    np.save(tmp_path / 'a.npy', quantised_sims(0))
    np.save(tmp_path / 'b.npy', quantised_sims(1, n_img=10))
    with pytest.raises(SimilarityFileError, match='differ in size'):
        main([str(tmp_path / 'a.npy'), str(tmp_path / 'b.npy')])
    with pytest.raises(SimilarityFileError, match='two or more'):
        main([str(tmp_path / 'a.npy')])


class Evil:
    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_never_runs_pickled_code(tmp_path):
    evil = Evil()
    evil.marker = tmp_path / 'ran'
    np.save(tmp_path / 'evil.npy', np.array({'npts': 1, 'sims': evil}, dtype=object))
    with pytest.raises(SimilarityFileError, match='refusing to load'):
        load_similarity_file(str(tmp_path / 'evil.npy'))
    assert not (tmp_path / 'ran').exists()
    (tmp_path / 'text.npy').write_text('not numpy')
    with pytest.raises(SimilarityFileError, match='not a readable similarity file'):
        load_similarity_file(str(tmp_path / 'text.npy'))


@pytest.mark.parametrize('rule', ['optimistic', 'pessimistic'])
def test_other_rules_bracket_published(rule):
    sims = quantised_sims(3)
    pub = evaluate_similarities(sims)
    other = evaluate_similarities(sims, tie_rule=rule)
    sign = 1 if rule == 'optimistic' else -1
    assert sign * (other['rsum'] - pub['rsum']) > 0


@pytest.mark.parametrize('rule', ['published', 'optimistic', 'pessimistic'])
def test_matrix_ranks_equal_each_rules_formulation(rule):
    from gpo_plugin.evaluation.ensemble import ranks_from_similarities

    sims = quantised_sims(4)
    txt_img = np.random.default_rng(0).permutation(np.arange(20).repeat(5))
    got = ranks_from_similarities(sims, txt_img, rule)
    want = oracle(sims, txt_img, rule)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
