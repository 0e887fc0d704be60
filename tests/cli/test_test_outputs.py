"""tools/test.py's evaluation outputs: table with every fold, --out provenance, --save-sims,
--save-ranks, --cxc-annots, --tie-rule (tiny demo model)."""

import hashlib
import json

import numpy as np
import pytest
import torch
from conftest import (
    CONFIGS_DIR,
    RUNNER_SIZES,
    make_cxc,
    published_cxc,
    published_loop,
    runner_options,
)

from gpo_plugin.cli import test as test_cli
from gpo_plugin.cli import train as train_cli


@pytest.fixture(scope='module')
def checkpoint(tiny_data, tmp_path_factory):
    root, vocab = tiny_data
    work = tmp_path_factory.mktemp('work')
    train_cli.main(
        [
            str(CONFIGS_DIR / 'vse_gpo_demo.py'),
            '--work-dir',
            str(work),
            *runner_options(root, vocab, 1),
        ]
    )
    return work / 'epoch_1.pth'


def run_test(tiny_data, checkpoint, tmp_path, *extra, fold_size=10):
    root, vocab = tiny_data
    opts = runner_options(root, vocab, 1)
    opts = [o.replace('fold_size=10', f'fold_size={fold_size}') for o in opts]
    argv = [str(CONFIGS_DIR / 'vse_gpo_demo.py'), str(checkpoint), '--work-dir', str(tmp_path)]
    return test_cli.main([*argv, *extra, *opts])


def test_outputs(tiny_data, checkpoint, tmp_path, capsys):
    n_img = RUNNER_SIZES['testall']
    cxc_dir = tmp_path / 'cxc'
    cxc_dir.mkdir()
    cxc_ids = make_cxc(cxc_dir, n_img=n_img)
    capsys.readouterr()
    out, sims_file, ranks_file = tmp_path / 'r.json', tmp_path / 's.npz', tmp_path / 'k.npz'
    metrics = run_test(
        tiny_data,
        checkpoint,
        tmp_path,
        '--out',
        str(out),
        '--save-sims',
        str(sims_file),
        '--save-ranks',
        str(ranks_file),
        '--cxc-annots',
        str(cxc_dir),
    )
    printed = capsys.readouterr().out
    assert printed.count('image-to-text') == 1
    for line in ('fold 0 (10 img)', 'fold 1 (10 img)', 'fold mean', 'fold std', 'ties: published'):
        assert line in printed
    assert 'protocols run: full set, 2 folds of 10 images' in printed and 'CxC i2t' in printed

    saved = json.loads(out.read_text())
    assert saved['metrics'] == pytest.approx(metrics)
    prov = saved['provenance']
    assert prov['checkpoint']['sha256'] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert prov['data']['num_images'] == n_img and prov['data']['num_captions'] == 5 * n_img
    assert prov['protocol']['folds'] == 2 and prov['protocol']['tie_rule'] == 'published'
    assert prov['versions']['torch'] == torch.__version__ and 'model' in prov['config']['resolved']

    arrays = np.load(sims_file, allow_pickle=False)
    sims, img, txt, txt_img = (arrays[k] for k in ('sims', 'img_emb', 'txt_emb', 'txt_img'))
    # As the published save_path: float64 products of the float32 embeddings.
    assert sims.shape == (n_img, 5 * n_img) and sims.dtype == np.float64
    assert img.dtype == np.float32
    assert np.array_equal(sims, np.matmul(img.astype(np.float64), txt.astype(np.float64).T))
    ranks = np.load(ranks_file, allow_pickle=False)
    want_i2t, want_t2i = published_loop(sims, txt_img)
    assert np.array_equal(ranks['i2t_rank'], want_i2t) and np.array_equal(
        ranks['t2i_rank'], want_t2i
    )
    assert np.array_equal(ranks['i2t_topk'][:, 0], np.argsort(sims, axis=1)[:, ::-1][:, 0])
    assert ranks['t2i_topk'].shape == (5 * n_img, 10)
    r1 = 100.0 * np.mean(want_i2t < 1)
    assert metrics['retrieval/i2t_R@1'] == pytest.approx(r1)

    want = published_cxc(img.astype(np.float64), txt.astype(np.float64), *cxc_ids)
    assert {k: metrics[f'cxc/{k}'] for k in want} == want


def test_fold_skip_is_said_and_tie_rule_flag(tiny_data, checkpoint, tmp_path, capsys):
    capsys.readouterr()
    metrics = run_test(tiny_data, checkpoint, tmp_path, '--tie-rule', 'pessimistic', fold_size=30)
    printed = capsys.readouterr().out
    assert 'fold protocol not run: 20 images do not split into folds of fold_size=30' in printed
    assert 'protocols run: full set;' in printed and 'ties: pessimistic' in printed
    assert metrics['retrieval/tie_rule'] == 'pessimistic'
