"""Shared pytest set-up: one CPU thread (2-core machines thrash with more), offline hub, the
benchmark references and tools on the import path, and the helpers several test modules use.

Test modules never import each other: shared fixtures live here, and shared plain functions
and constants are imported with ``from conftest import ...`` (pytest puts tests/ on sys.path
when it loads this file; tests/test_layering.py checks the rule)."""

import json
import os
import sys
from pathlib import Path

# Tests import the reference formulations (benchmarks/references) and the tools' modules, which
# are grouped as mmpretrain's (tools/demos, tools/analysis_tools, tools/misc, ...).
ROOT = Path(__file__).resolve().parents[1]
TOOL_FOLDERS = ['analysis_tools', 'demos', 'misc', 'model_converters']
# The grouped folders come before tools/ itself, whose eval_ensemble.py, check_dataset.py, ...
# are only aliases that run the grouped scripts.
sys.path[:0] = (
    [str(ROOT / 'benchmarks')]
    + [str(ROOT / 'tools' / folder) for folder in TOOL_FOLDERS]
    + [str(ROOT / 'tools')]
)

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MKL_NUM_THREADS', '1')
os.environ['HF_HUB_OFFLINE'] = '1'
os.environ['TRANSFORMERS_OFFLINE'] = '1'

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from scipy.io import savemat  # noqa: E402

torch.set_num_threads(1)

import gpo_plugin  # noqa: E402,F401  (registers every module once)
from gpo_plugin.datasets import PrecompCaptionDataset  # noqa: E402
from gpo_plugin.demo import make_demo_data  # noqa: E402
from gpo_plugin.utils.vocab import build_vocab, build_vocab_file, save_vocab  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# -- precomputed VSE data (datasets/test_vse_data.py, test_bad_input.py, test_fault_data.py) --

PRECOMP_SIZES = {'train': 12, 'dev': 4, 'test': 4, 'testall': 10}


@pytest.fixture(scope='module')
def precomp_demo(tmp_path_factory):
    """The demo set in the precomputed layout (16-d regions) with its word vocabulary."""
    root = make_demo_data(
        tmp_path_factory.mktemp('precomp'), seed=0, feat_dim=16, sizes=PRECOMP_SIZES
    )
    words = build_vocab((root / 'train_caps.txt').read_text().splitlines(), threshold=1)
    save_vocab(words, root / 'vocab.json')
    return root


def precomp_dataset(root, split='train', **kwargs):
    kwargs.setdefault('feat_dim', 16)
    return PrecompCaptionDataset(data_root=str(root), split=split, **kwargs)


def copy_split(src, dst, split='train'):
    dst.mkdir(exist_ok=True)
    for suffix in ('ims.npy', 'caps.txt', 'ids.txt'):
        (dst / f'{split}_{suffix}').write_bytes((src / f'{split}_{suffix}').read_bytes())
    (dst / 'vocab.json').write_bytes((src / 'vocab.json').read_bytes())
    return dst


# -- miniature CUB / Cars196 / SOP layouts (datasets/, cli/test_dml_configs.py) -------------

DML_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]

DML_TRAIN_IDS = list(range(1, 9))  # 8 training classes (the real sets have 100 / 98 / 11,318)


def _write_image(path, value=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), np.full((6, 5, 3), value, np.uint8))


def make_cub(root, train_ids=DML_TRAIN_IDS, test_ids=(101, 102, 150), per_class=2):
    images, labels, image_id = [], [], 0
    for cls in [*train_ids, *test_ids]:
        for k in range(per_class):
            image_id += 1
            rel = f'{cls:03d}.Bird_{cls}/img_{k}.jpg'
            _write_image(root / 'images' / rel, cls)
            images.append(f'{image_id} {rel}')
            labels.append(f'{image_id} {cls}')
    (root / 'images.txt').write_text('\n'.join(images) + '\n')
    (root / 'image_class_labels.txt').write_text('\n'.join(labels) + '\n')
    return root


def make_cars(root, train_ids=DML_TRAIN_IDS, test_ids=(99, 120, 196), per_class=2):
    records, index = [], 0
    for cls in [*train_ids, *test_ids]:
        for _ in range(per_class):
            index += 1
            rel = f'car_ims/{index:06d}.jpg'
            _write_image(root / rel, cls)
            records.append((rel, 1, 2, 3, 4, cls, index % 2))
    dtype = [
        ('relative_im_path', 'O'),
        ('bbox_x1', 'O'),
        ('bbox_y1', 'O'),
        ('bbox_x2', 'O'),
        ('bbox_y2', 'O'),
        ('class', 'O'),
        ('test', 'O'),
    ]
    savemat(root / 'cars_annos.mat', {'annotations': np.array(records, dtype=dtype)[None]})
    return root


def make_sop(root, train_ids=DML_TRAIN_IDS, test_ids=(11319, 11320, 22634), per_class=2):
    for split, ids in (('train', train_ids), ('test', test_ids)):
        lines, image_id = ['image_id class_id super_class_id path'], 0
        for cls in ids:
            for k in range(per_class):
                image_id += 1
                rel = f'bicycle_final/{cls}_{k}.JPG'
                _write_image(root / rel, cls % 255)
                lines.append(f'{image_id} {cls} 1 {rel}')
        (root / f'Ebay_{split}.txt').write_text('\n'.join(lines) + '\n')
    return root


# -- the published retrieval loops and the tie rules' oracles (evaluation/, cli/) ----------


def published_loop(sims, txt_img):
    """The published i2t / t2i loops, on a (N_img, N_txt) score matrix."""
    i2t = np.zeros(sims.shape[0], dtype=np.int64)
    for i in range(sims.shape[0]):
        inds = np.argsort(sims[i])[::-1]
        i2t[i] = min(np.where(inds == c)[0][0] for c in np.flatnonzero(txt_img == i))
    t2i = np.zeros(sims.shape[1], dtype=np.int64)
    cols = sims.T
    for j in range(sims.shape[1]):
        inds = np.argsort(cols[j])[::-1]
        t2i[j] = np.where(inds == txt_img[j])[0][0]
    return i2t, t2i


def sorted_rank(scores, is_truth, truth_first):
    """Position of the first ground truth after sorting by score, ties broken for (or
    against) the ground truth: the optimistic (pessimistic) rule, by sorting."""
    keys = sorted(
        range(len(scores)),
        key=lambda c: (-scores[c], not is_truth[c] if truth_first else is_truth[c]),
    )
    return min(p for p, c in enumerate(keys) if is_truth[c])


def rule_loop(sims, txt_img, truth_first):
    i2t = [sorted_rank(sims[i], txt_img == i, truth_first) for i in range(sims.shape[0])]
    images = np.arange(sims.shape[0])
    t2i = [sorted_rank(sims[:, j], images == txt_img[j], truth_first) for j in range(sims.shape[1])]
    return np.array(i2t), np.array(t2i)


def oracle(sims, txt_img, rule):
    if rule == 'published':
        return published_loop(sims, txt_img)
    return rule_loop(sims, txt_img, truth_first=rule == 'optimistic')


# -- CxC: a generated annotation folder and the published computation (evaluation/, cli/) --


def make_cxc(tmp_path, n_img=12, seed=0):
    """A CxC folder for n_img images x 5 captions with ids, ratings and absent ids."""
    rng = np.random.default_rng(seed)
    img_ids = [str(1000 + 7 * i) for i in range(n_img)]
    cap_ids = [str(50000 + 3 * c) for c in range(5 * n_img)]
    (tmp_path / 'testall_ids.txt').write_text(''.join(f'{i}\n' for i in img_ids for _ in range(5)))
    (tmp_path / 'testall_capids.txt').write_text(''.join(f'{c}\n' for c in cap_ids))

    def pick(ids, n):
        return [ids[k] for k in rng.choice(len(ids), size=n, replace=False)]

    it = {
        'i2t': {
            i: [[int(c), 1.0] for c in pick(cap_ids, rng.integers(0, 8))] + [[999, 5.0]]
            for i in img_ids
        },
        't2i': {c: [[int(i), 1.0] for i in pick(img_ids, rng.integers(0, 3))] for c in cap_ids},
    }
    i2i = {i: [[int(j), float(rng.integers(0, 11)) / 2] for j in pick(img_ids, 4)] for i in img_ids}
    t2t = {c: [[int(d), float(rng.integers(0, 11)) / 2] for d in pick(cap_ids, 5)] for c in cap_ids}
    for name, obj in (('cxc_it', it), ('cxc_i2i', i2i), ('cxc_t2t', t2t)):
        (tmp_path / f'{name}.json').write_text(json.dumps(obj))
    return img_ids, cap_ids, it, i2i, t2t


def _best_position(row, targets):
    inds = np.argsort(row)[::-1]
    return min((np.where(inds == t)[0][0] for t in targets), default=1e20)


def _recalls(ranks):
    ranks = np.array(ranks)
    return [100.0 * len(np.where(ranks < k)[0]) / len(ranks) for k in (1, 5, 10)]


def published_cxc(images, captions, img_ids, cap_ids, it, i2i, t2t):
    """The published eval_cxc, written out: argsort rows of the products of its float64 arrays."""
    sims = images @ captions.T
    out = {}
    for name, s, queries, data, annot in (
        ('t2i', sims.T, cap_ids, img_ids, it['t2i']),
        ('i2t', sims, img_ids, cap_ids, it['i2t']),
    ):
        ranks = []
        for q, query in enumerate(queries):
            pos = [data.index(str(e[0])) for e in annot[query] if str(e[0]) in data]
            ranks.append(_best_position(s[q], pos))
        out.update(zip([f'{name}_R@{k}' for k in (1, 5, 10)], _recalls(ranks), strict=True))
    for name, embs, ids, annot, thresh, text in (
        ('i2i', images, img_ids, i2i, 2.5, False),
        ('t2t', captions, cap_ids, t2t, 3.0, True),
    ):
        s = embs @ embs.T
        np.fill_diagonal(s, 0)
        ranks = []
        for q, query in enumerate(ids):
            pos = [ids.index(str(e[0])) for e in annot[query] if e[1] >= thresh]
            if text:
                pos += [c for c in range(q // 5 * 5, q // 5 * 5 + 5) if c != q]
            elif not pos:
                continue
            ranks.append(_best_position(s[q], pos))
        out.update(zip([f'{name}_R@{k}' for k in (1, 5, 10)], _recalls(ranks), strict=True))
    return out


# -- the tiny demo set for Runner trainings (cli/) -----------------------------------------

CONFIGS_DIR = ROOT / 'configs'
RUNNER_SIZES = {'train': 40, 'dev': 10, 'test': 10, 'testall': 20}


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    """(precomputed root, vocab file) of a 128-d demo set small enough to train in seconds."""
    root = tmp_path_factory.mktemp('vse') / 'precomp'
    make_demo_data(root, seed=1, feat_dim=128, sizes=RUNNER_SIZES)
    vocab = root.parent / 'vocab.json'
    build_vocab_file([str(root / 'train_caps.txt')], str(vocab), threshold=1)
    return root, vocab


def runner_options(root, vocab, max_epochs):
    opts = [
        f'model.txt_enc.vocab_file={vocab}',
        f'train_cfg.max_epochs={max_epochs}',
        'train_cfg.val_interval=1',
        'warmup_epochs=1',
        'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.interval=1',
        'train_dataloader.batch_size=32',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'test_evaluator.fold_size=10',
        'custom_hooks.0.warmup_epochs=1',
    ]
    opts.append(f'vocab_file={vocab}')  # the tools copy it into every pipeline's tokenizer
    return ['--data-root', str(root), '--cfg-options', *opts]
