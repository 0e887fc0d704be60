"""Video–text retrieval: the HGR and plain frame layouts, select sampling, named errors, the
configs, HGR's protocol against an argsort oracle, and train + test from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mmengine.config import Config

from gpo_plugin.datasets import (
    EmptyCaptionsError,
    FeatureDimensionError,
    MissingVideoError,
    TokenizeCaption,
    VideoCaptionDataset,
    select_frames,
)
from gpo_plugin.evaluation import VideoRetrievalMetric
from gpo_plugin.evaluation.functional.video_retrieval_ranks import (
    multi_gt_ranks,
    summarize_video_ranks,
    video_scores,
)
from gpo_plugin.registry import MODELS

ROOT = Path(__file__).resolve().parents[2]
NAMES = ['a', 'b/c', 'd']
FRAMES = {'a': 5, 'b/c': 25, 'd': 1}
CAPTIONS = {'a': ['a man runs.', 'someone cooks.'], 'b/c': ['a man runs.'], 'd': ['a cat sleeps.']}
WORD2INT = {'<BOS>': 0, '<EOS>': 1, '<UNK>': 2, 'a': 3, 'man': 4, 'runs': 5, '.': 6, 'cat': 7}


def _write_hgr(root: Path, dims=(3, 2), names=NAMES, frames=FRAMES, captions=CAPTIONS) -> dict:
    """A tiny HGR release written by hand: two HDF5 files, keys with '/' -> '_'."""
    rng = np.random.default_rng(0)
    (root / 'public_split').mkdir(parents=True)
    (root / 'annotation/RET').mkdir(parents=True)
    np.save(root / 'public_split/tst_names.npy', np.array(names))
    (root / 'annotation/RET/ref_captions.json').write_text(json.dumps(captions))
    (root / 'annotation/RET/word2int.json').write_text(json.dumps(WORD2INT))
    raw = {n: [rng.standard_normal((frames[n], d)).astype(np.float32) for d in dims] for n in names}
    for i in range(len(dims)):
        with h5py.File(root / f'ft{i}_tst.hdf5', 'w') as f:
            for name in names:
                f.create_dataset(name.replace('/', '_'), data=raw[name][i])
    return raw


def _hgr_dataset(root: Path, files=('ft0_{split}.hdf5', 'ft1_{split}.hdf5'), **kw):
    return VideoCaptionDataset(
        data_root=str(root),
        split='tst',
        ft_files=list(files),
        **kw,
    )


def test_hgr_layout_reads_the_raw_files(tmp_path):
    raw = _write_hgr(tmp_path)
    ds = _hgr_dataset(tmp_path, max_frames=4, feat_dim=5)
    assert len(ds) == 4  # one sample per (video, sentence)
    # Distinct texts, first-seen order; the shared caption has one id.
    assert ds.metainfo['captions'] == ['a man runs.', 'someone cooks.', 'a cat sleeps.']
    pairs = [(ds.get_data_info(i)['img_idx'], ds.get_data_info(i)['cap_idx']) for i in range(4)]
    assert pairs == [(0, 0), (0, 1), (1, 0), (2, 2)]
    with h5py.File(tmp_path / 'ft0_tst.hdf5') as f0, h5py.File(tmp_path / 'ft1_tst.hdf5') as f1:
        for i, name in zip(range(4), ['a', 'a', 'b/c', 'd'], strict=True):
            info = ds.get_data_info(i)
            key = name.replace('/', '_')
            full = np.concatenate([f0[key][...], f1[key][...]], axis=1)
            np.testing.assert_array_equal(np.concatenate(raw[name], axis=1), full)
            # linspace(0, T-1, 4) rounded: T=5 -> 0, 1.33, 2.67, 4; T=25 -> 0, 8, 16, 24.
            keep = {5: [0, 1, 3, 4], 25: [0, 8, 16, 24], 1: [0]}[len(full)]
            np.testing.assert_array_equal(info['img'], full[keep])
    # word2int.json is the vocabulary: our specials, then its words by id.
    vocab = str(tmp_path / 'annotation/RET/word2int.json')
    tokenize = TokenizeCaption(dict(type='VocabTokenizer', vocab_file=vocab))
    tokens = tokenize(ds.get_data_info(0))['txt']
    assert tokens == [1, 5, 6, 7, 8, 2]  # <start> a man runs . <end>
    assert tokenize(ds.get_data_info(3))['txt'] == [1, 5, 9, 3, 8, 2]  # 'sleeps' is <unk>


def test_plain_npy_layout(tmp_path):
    _write_hgr(tmp_path)
    rng = np.random.default_rng(1)
    (tmp_path / 'frames').mkdir()
    raw = {}
    for name in ['a', 'c', 'd']:
        raw[name] = rng.standard_normal((FRAMES.get(name, 7), 6)).astype(np.float32)
        np.save(tmp_path / 'frames' / f'{name}.npy', raw[name])
    names = tmp_path / 'names.txt'
    names.write_text('d\nc\na\n')
    captions = {'a': ['x y.'], 'c': ['z.', 'x y.'], 'd': ['w.']}
    (tmp_path / 'caps.json').write_text(json.dumps(captions))
    ds = VideoCaptionDataset(
        data_root=str(tmp_path),
        split='tst',
        frame_dir='frames',
        name_file='names.txt',
        caption_file='caps.json',
    )
    assert [ds.get_data_info(i)['video'] for i in range(len(ds))] == ['d', 'c', 'c', 'a']
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        np.testing.assert_array_equal(info['img'], raw[info['video']])  # no cap: all frames
    assert [ds.get_data_info(i)['cap_idx'] for i in range(4)] == [0, 1, 2, 2]


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 400), st.one_of(st.none(), st.integers(1, 64)))
def test_select_frames_matches_exact_rational_rounding(num_frames, max_frames):
    got = select_frames(num_frames, max_frames)
    if max_frames is None or num_frames <= max_frames:
        assert got.tolist() == list(range(num_frames))
        return
    # Independent: HGR rounds np.linspace(0, T-1, M), i.e. the floats i * ((T-1)/(M-1)) with
    # the last point exactly T-1, half to even. Within 1/2 of the exact rational point.
    step = (num_frames - 1) / (max_frames - 1) if max_frames > 1 else 0.0
    points = [i * step for i in range(max_frames - 1)] + [float(num_frames - 1)]
    points = points if max_frames > 1 else [0.0]  # one point: the start
    assert got.tolist() == [round(p) for p in points]
    exact = Fraction(num_frames - 1, max(max_frames - 1, 1))
    assert all(abs(k - i * exact) <= Fraction(1, 2) for i, k in enumerate(got.tolist()))
    assert len(set(got.tolist())) == max_frames  # spread: no frame twice


def test_named_errors(tmp_path):
    root = tmp_path / 'missing'
    _write_hgr(root)
    with h5py.File(root / 'ft1_tst.hdf5', 'a') as f:
        del f['b_c']
    with pytest.raises(MissingVideoError, match=r"'b/c'.*ft1_tst\.hdf5"):
        _hgr_dataset(root)

    root = tmp_path / 'frames'
    _write_hgr(root)
    with h5py.File(root / 'ft1_tst.hdf5', 'a') as f:
        del f['d']
        f.create_dataset('d', data=np.zeros((2, 2), np.float32))
    with pytest.raises(FeatureDimensionError, match=r"'d' has 2 frames in .*ft1_tst.*but 1"):
        _hgr_dataset(root)

    root = tmp_path / 'dim'
    _write_hgr(root)
    with h5py.File(root / 'ft0_tst.hdf5', 'a') as f:
        del f['d']
        f.create_dataset('d', data=np.zeros((1, 4), np.float32))
    with pytest.raises(FeatureDimensionError, match=r"ft0_tst\.hdf5: video 'd' has 4-d"):
        _hgr_dataset(root)

    root = tmp_path / 'cfg'
    _write_hgr(root)
    with pytest.raises(FeatureDimensionError, match='feat_dim=2048'):
        _hgr_dataset(root, feat_dim=2048)

    root = tmp_path / 'empty'
    _write_hgr(root, captions={**CAPTIONS, 'd': []})
    with pytest.raises(EmptyCaptionsError, match=r"'d'"):
        _hgr_dataset(root)

    root = tmp_path / 'nocap'
    _write_hgr(root, captions={k: v for k, v in CAPTIONS.items() if k != 'a'})
    with pytest.raises(MissingVideoError, match=r"'a'.*ref_captions\.json"):
        _hgr_dataset(root)

    root = tmp_path / 'npy'
    _write_hgr(root)
    with pytest.raises(MissingVideoError, match=r"'a'.*a\.npy"):
        VideoCaptionDataset(
            data_root=str(root),
            split='tst',
            frame_dir='frames',
        )
    with pytest.raises(FileNotFoundError, match='nope_tst.hdf5'):
        _hgr_dataset(root, files=('nope_{split}.hdf5',))


# -- protocol --------------------------------------------------------------------------


def _oracle(scores: np.ndarray, gts: list[list[int]], tie_rule: str) -> np.ndarray:
    """HGR's eval_q2m per query: the best position of a ground truth in a descending sort;
    optimistic/pessimistic sort ground truths first/last among equal scores."""
    ranks = []
    for q, row in enumerate(scores):
        if tie_rule == 'published':
            order = np.argsort(-row)
            ranks.append(min(int(np.where(order == k)[0][0]) for k in gts[q]))
            continue
        is_gt = np.isin(np.arange(len(row)), gts[q])
        second = ~is_gt if tie_rule == 'optimistic' else is_gt
        order = np.lexsort((second, -row))
        ranks.append(int(np.flatnonzero(is_gt[order])[0]))
    return np.array(ranks)


@st.composite
def _video_sets(draw):
    num_videos = draw(st.integers(1, 12))
    num_texts = draw(st.integers(1, 14))
    # Every video has 1-4 texts; a text may belong to several videos (duplicate captions).
    pairs = set()
    for v in range(num_videos):
        for t in draw(st.lists(st.integers(0, num_texts - 1), min_size=1, max_size=4)):
            pairs.add((v, t))
    used = sorted({t for _, t in pairs})
    remap = {t: i for i, t in enumerate(used)}
    pairs = sorted((v, remap[t]) for v, t in pairs)
    levels = draw(st.integers(1, 6))  # few levels: many ties
    dim = draw(st.integers(1, 4))
    vid = draw(
        st.lists(st.integers(-levels, levels), min_size=num_videos * dim, max_size=num_videos * dim)
    )
    txt = draw(
        st.lists(st.integers(-levels, levels), min_size=len(used) * dim, max_size=len(used) * dim)
    )
    return (
        torch.tensor(vid, dtype=torch.float32).view(num_videos, dim) / levels,
        torch.tensor(txt, dtype=torch.float32).view(len(used), dim) / levels,
        pairs,
    )


@settings(max_examples=300, deadline=None)
@given(_video_sets(), st.sampled_from(['published', 'optimistic', 'pessimistic']))
def test_protocol_equals_argsort_oracle(data, tie_rule):
    vid, txt, pairs = data
    scores = video_scores(vid, txt)
    pv = torch.tensor([v for v, _ in pairs])
    pt = torch.tensor([t for _, t in pairs])
    v2t = multi_gt_ranks(scores, pv, pt, tie_rule, chunk_size=3)
    t2v = multi_gt_ranks(scores.T, pt, pv, tie_rule, chunk_size=5)
    s = scores.numpy()
    v_gts = [[t for v, t in pairs if v == q] for q in range(len(vid))]
    t_gts = [[v for v, t in pairs if t == q] for q in range(len(txt))]
    np.testing.assert_array_equal(v2t.numpy(), _oracle(s, v_gts, tie_rule))
    np.testing.assert_array_equal(t2v.numpy(), _oracle(s.T, t_gts, tie_rule))


def test_metric_deduplicates_captions_and_matches_hgr_evaluate():
    """Samples as the Runner gives them (one per pair, duplicate texts under several videos)
    -> the metric equals HGR's evaluate on the distinct texts."""
    rng = np.random.default_rng(3)
    videos = {f'v{i}': rng.choice(6, size=rng.integers(1, 4), replace=False) for i in range(9)}
    texts = [f'text {i}' for i in range(6)]
    used = [t for t in texts if any(texts.index(t) in c for c in videos.values())]
    txt_table = torch.tensor(rng.integers(-2, 3, (6, 3)), dtype=torch.float32)
    vid_table = torch.tensor(rng.integers(-2, 3, (9, 3)), dtype=torch.float32)
    metric = VideoRetrievalMetric()
    ids: dict[str, int] = {}
    samples = []
    for v, caps in enumerate(videos.values()):
        for c in caps:
            cap = ids.setdefault(texts[c], len(ids))
            samples.append(dict(img_idx=v, cap_idx=cap, img_emb=vid_table[v], txt_emb=txt_table[c]))
    metric.process(None, samples[:5])
    metric.process(None, samples[5:])
    got = metric.compute_metrics(metric.results)
    # HGR: captions = the distinct texts; i2t_gts[v] = the texts in ref_captions[v].
    cap_names = list(ids)
    scores = (vid_table @ txt_table[[texts.index(t) for t in cap_names]].T).numpy()
    i2t_gts = [
        [i for i, t in enumerate(cap_names) if texts.index(t) in caps] for caps in videos.values()
    ]
    t2i_gts = [[v for v in range(9) if i in i2t_gts[v]] for i in range(len(cap_names))]
    assert len(cap_names) == len(used)
    expected = summarize_video_ranks(
        torch.tensor(_oracle(scores, i2t_gts, 'published')),
        torch.tensor(_oracle(scores.T, t2i_gts, 'published')),
    )
    v2t = _oracle(scores, i2t_gts, 'published')
    assert expected['v2t_R@1'] == pytest.approx(100 * np.mean(v2t < 1))
    assert expected['v2t_medr'] == pytest.approx(np.median(v2t) + 1)  # not floored, as HGR
    assert got == pytest.approx(expected)


def test_protocol_refuses_bad_input():
    with pytest.raises(ValueError, match='tie_rule'):
        VideoRetrievalMetric(tie_rule='random')
    scores = torch.tensor([[0.1, float('nan')]])
    with pytest.raises(ValueError, match=r'score \[0, 1\] is nan'):
        multi_gt_ranks(scores, torch.tensor([0]), torch.tensor([0]))
    with pytest.raises(ValueError, match='query 1 has no ground truth'):
        multi_gt_ranks(torch.zeros(2, 2), torch.tensor([0]), torch.tensor([0]))


# -- configs and command line ------------------------------------------------------------

CONFIGS = [
    f'configs/vse_{p}_{d}.py' for p in ('gpo', 'avgpool', 'maxpool') for d in ('msrvtt', 'vatex')
]


@pytest.mark.parametrize('config', CONFIGS)
def test_video_configs_build(config, tmp_path):
    cfg = Config.fromfile(ROOT / config)
    vocab = tmp_path / 'word2int.json'
    vocab.write_text(json.dumps(WORD2INT))
    cfg.model.txt_enc.vocab_file = str(vocab)
    model = MODELS.build(cfg.model)
    dim = 2048 if 'msrvtt' in config else 1024
    assert model.img_enc.in_channels == dim
    assert cfg.train_dataloader.dataset.feat_dim == dim
    pooler = 'GPO' if '_gpo_' in config else 'AvgPooling' if 'avgpool' in config else 'MaxPooling'
    assert type(model.img_enc.gpool).__name__ == pooler
    assert cfg.train_dataloader.batch_size == 128 and cfg.train_cfg.max_epochs == 35
    assert cfg.param_scheduler[0].milestones == [25] and cfg.optim_wrapper.optimizer.lr == 1e-4
    assert cfg.model.head.loss.margin == 0.2 and cfg.model.head.loss.max_violation
    assert cfg.test_evaluator.type == 'VideoRetrievalMetric'
    tokenizer = dict(type='VocabTokenizer', vocab_file=cfg.vocab_file)
    for loader in ('train', 'val', 'test'):  # every pipeline tokenises first, with the vocabulary
        assert cfg[f'{loader}_dataloader'].dataset.pipeline[0] == dict(
            type='TokenizeCaption', tokenizer=tokenizer
        )
    frames = model.img_enc(torch.randn(2, 20, dim), torch.tensor([20, 3]))
    assert frames.shape == (2, 1024)


@pytest.mark.slow
@pytest.mark.parametrize('config', ['configs/vse_gpo_msrvtt.py', 'configs/vse_gpo_vatex.py'])
def test_train_and_test_from_the_command_line(config, tmp_path):
    from gpo_plugin.demo import make_video_demo_data

    data = make_video_demo_data(tmp_path / 'data', sizes={'trn': 24, 'val': 6, 'tst': 6})
    vocab = str(data / 'annotation/RET/word2int.json')
    files = (
        '[ordered_feature/SA/appearance/{split}_ft.hdf5,ordered_feature/SA/motion/{split}_ft.hdf5]'
    )
    options = [
        f'model.txt_enc.vocab_file={vocab}',
        'model.img_enc.in_channels=64',
        'model.img_enc.embed_dim=32',
        'model.txt_enc.embed_dim=32',
        'model.txt_enc.word_dim=16',
        'train_cfg.max_epochs=1',
        'train_dataloader.batch_size=32',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0',
        'test_dataloader.num_workers=0',
    ]
    for loader in ('train', 'val', 'test'):
        options += [
            f'{loader}_dataloader.dataset.ft_files={files}',
            f'{loader}_dataloader.dataset.feat_dim=64',
        ]
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'}
    work = tmp_path / 'work'
    common = ['--data-root', str(data), '--work-dir', str(work), '--cfg-options', *options]
    train = subprocess.run(
        [sys.executable, 'tools/train.py', config, *common],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    out = tmp_path / 'results.json'
    test = subprocess.run(
        [
            sys.executable,
            'tools/test.py',
            config,
            str(work / 'epoch_1.pth'),
            '--out',
            str(out),
            *common,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert test.returncode == 0, test.stderr[-3000:]
    metrics = json.loads(out.read_text())
    metrics = metrics.get('metrics', metrics)
    keys = {k.split('/')[-1] for k in metrics}
    assert {'t2v_R@1', 'v2t_R@10', 't2v_medr', 'v2t_meanr', 'rsum'} <= keys
    assert 'text-to-video' in test.stdout + test.stderr


def test_hdf5_handles_open_lazily_per_process(tmp_path):
    import pickle

    raw = _write_hgr(tmp_path)
    ds = _hgr_dataset(tmp_path)
    assert ds.frames._handles is None  # closed after the check: forked workers open their own
    first = ds.get_data_info(2)['img']
    assert ds.frames._handles is not None
    clone = pickle.loads(pickle.dumps(ds))  # what a spawned worker receives
    assert clone.frames._handles is None
    np.testing.assert_array_equal(clone.get_data_info(2)['img'], first)
    np.testing.assert_array_equal(first, np.concatenate(raw['b/c'], axis=1))


def test_pickled_name_list_is_refused(tmp_path):
    _write_hgr(tmp_path)
    np.save(tmp_path / 'public_split/tst_names.npy', np.array(NAMES, dtype=object))
    with pytest.raises(ValueError, match=r'tst_names\.npy is not a plain string array'):
        _hgr_dataset(tmp_path)


def test_demo_theta_helpers(tmp_path):
    from run_video_demo import frame_theta, plot_theta

    gpo = MODELS.build(dict(type='GPO'))
    thetas = frame_theta(gpo, (3, 7))
    assert [len(t) for t in thetas] == [3, 7]
    for theta in thetas:
        assert theta.sum() == pytest.approx(1.0, abs=1e-5) and (theta >= 0).all()
    plot_theta(thetas, str(tmp_path / 'theta.png'))
    assert (tmp_path / 'theta.png').stat().st_size > 0
