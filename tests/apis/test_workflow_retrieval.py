"""Using a trained model: exact top-k (topk_by_rule, chunked scan, faiss/torch index) against
np.argsort of the full float64 row (the published scores), the inferencer's inputs (region sets, captions through the
pipeline, explicit modality), and tools/retrieve.py on precomputed features."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mmengine.config import Config

from gpo_plugin.apis import (
    EmbeddingIndex,
    VSEInferencer,
    chunked_topk,
)
from gpo_plugin.apis.retrieval_index import faiss_available
from gpo_plugin.demo import make_demo_data
from gpo_plugin.evaluation.functional import topk_by_rule
from gpo_plugin.registry import MODELS
from gpo_plugin.utils.config_setup import set_vocab_file
from gpo_plugin.utils.vocab import build_vocab_file

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / 'configs' / 'vse_gpo_demo.py')


def float64_rows(q, g) -> np.ndarray:
    """The published scores: float32 embeddings copied into float64 arrays, multiplied."""
    return np.matmul(
        np.asarray(q, dtype=np.float32).astype(np.float64),
        np.asarray(g, dtype=np.float32).astype(np.float64).T,
    )


def reference_topk(scores: np.ndarray, k: int, tie_rule: str) -> list[list[int]]:
    """Row by row on the full float64 row: np.argsort reversed ('published'), or sorting by
    (-score, index) (the other rules)."""
    out = []
    for row in scores:
        if tie_rule == 'published':
            order = np.argsort(row)[::-1]
        else:
            order = sorted(range(len(row)), key=lambda j: (-row[j], j))
        out.append([int(j) for j in order[:k]])
    return out


# Scores on a coarse grid (many exact ties), some entries nudged by one float32 ulp: near-ties
# whose float32 order (or tie) differs from their float64 order.
grid_arrays = st.integers(1, 4).flatmap(
    lambda dim: st.tuples(
        st.lists(st.lists(st.integers(-2, 2), min_size=dim, max_size=dim), min_size=1, max_size=6),
        st.lists(st.lists(st.integers(-2, 2), min_size=dim, max_size=dim), min_size=1, max_size=40),
        st.lists(st.integers(-1, 1), min_size=0, max_size=40),
    )
)


def nudged(values: list, steps: list) -> torch.Tensor:
    """The grid values / 4 + 0.3, the first column moved by ``steps`` float32 ulps."""
    t = torch.tensor(values, dtype=torch.float32) / 4 + 0.3
    for i, step in enumerate(steps[: len(t)]):
        if step:
            t[i, 0] = torch.nextafter(t[i, 0], torch.tensor(step * 10.0))
    return t


@settings(max_examples=80, deadline=None)
@given(
    arrays=grid_arrays,
    k=st.integers(1, 45),
    tie_rule=st.sampled_from(['published', 'optimistic', 'pessimistic']),
)
def test_topk_and_chunked_scan_equal_argsort_of_the_float64_row(arrays, k, tie_rule):
    q = nudged(arrays[0], [])
    g = nudged(arrays[1], arrays[2])
    expected = reference_topk(float64_rows(q, g), k, tie_rule)
    scores, ids = topk_by_rule(q, g, k, tie_rule)
    assert ids.tolist() == expected
    np.testing.assert_allclose(
        scores.numpy(), np.take_along_axis(float64_rows(q, g), ids.numpy(), 1), atol=1e-12
    )
    for chunk in (1, 3, 7):
        s2, i2 = chunked_topk(q, g.numpy(), k, tie_rule, chunk_size=chunk)
        assert i2.tolist() == expected and torch.equal(s2, scores)


def test_topk_near_tie_needs_the_float64_row():
    """Two gallery rows one ulp apart: float32 scores tie (argsort keeps index order), float64
    orders them; the result follows float64 (fails if the float64 recheck is removed)."""
    gen = torch.Generator().manual_seed(1)
    q = torch.nn.functional.normalize(torch.rand(30, 64, generator=gen) + 0.5, dim=1)
    g = torch.nn.functional.normalize(torch.rand(20, 64, generator=gen), dim=1).repeat(2, 1)
    for i in range(20):  # the later copy is nudged down: float64 ranks it second
        g[20 + i, 3] = torch.nextafter(g[20 + i, 3], torch.tensor(-1.0))
    rows64 = float64_rows(q, g)
    rows32 = (q @ g.t()).numpy()
    want = reference_topk(rows64, 5, 'published')
    assert want != reference_topk(rows32, 5, 'published')  # float32 would give another order
    assert topk_by_rule(q, g, 5)[1].tolist() == want
    assert chunked_topk(q, g, 5, chunk_size=4)[1].tolist() == want


@pytest.mark.parametrize('backend', ['torch', 'faiss'])
def test_index_build_save_load_search_is_exact(tmp_path, backend):
    if backend == 'faiss' and not faiss_available():
        pytest.skip('faiss not installed (the torch backend is the fallback)')
    gen = torch.Generator().manual_seed(0)
    g = torch.randint(-2, 3, (300, 8), generator=gen).float() / 4 + 0.3  # many exact ties
    q = torch.randint(-2, 3, (20, 8), generator=gen).float() / 4 + 0.3
    g[::3, 0] = torch.nextafter(g[::3, 0], torch.tensor(10.0))  # and near-ties
    index = EmbeddingIndex(8, backend, ids=[f'item{i}' for i in range(300)])
    for part in g.split(64):
        index.add(part)
    index.save(tmp_path / 'gallery')
    loaded = EmbeddingIndex.load(tmp_path / 'gallery')
    assert loaded.backend == backend and len(loaded) == 300 and loaded.ids[7] == 'item7'
    for rule in ('published', 'optimistic'):
        expected = reference_topk(float64_rows(q, g), 10, rule)
        for idx in (index, loaded):
            scores, ids = idx.search(q, k=10, tie_rule=rule, chunk_size=50)
            assert ids.tolist() == expected
            np.testing.assert_allclose(
                scores.numpy(), np.take_along_axis(float64_rows(q, g), ids.numpy(), 1), atol=1e-12
            )
    # Safe formats only: JSON metadata, and the vectors as faiss's file or a plain .npy.
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(['gallery.json', f'gallery.{"faiss" if backend == "faiss" else "npy"}'])
    with pytest.raises(FileNotFoundError, match='EmbeddingIndex.save'):
        EmbeddingIndex.load(tmp_path / 'missing')


@pytest.fixture(scope='module')
def region_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('region')
    root = make_demo_data(tmp / 'precomp', seed=3, feat_dim=128, sizes={'testall': 12})
    vocab = tmp / 'vocab.json'
    build_vocab_file([str(root / 'testall_caps.txt')], str(vocab), threshold=1)
    cfg = Config.fromfile(DEMO)
    set_vocab_file(cfg, str(vocab))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    ckpt = tmp / 'model.pth'
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    return root, vocab, ckpt, model.eval()


def test_inferencer_encodes_region_sets_and_captions_like_the_model(
    region_model, tmp_path, monkeypatch
):
    root, vocab, ckpt, model = region_model
    inf = VSEInferencer(DEMO, ckpt, device='cpu', batch_size=5, show_progress=False, vocab=vocab)
    ims = np.load(root / 'testall_ims.npy', mmap_mode='r')
    lengths = torch.tensor([36, 10, 5] + [36] * (len(ims) - 3))
    with torch.no_grad():
        regions = torch.from_numpy(np.array(ims))
        expected = model.head.embed_image(model.encode_image(regions, lengths))
    # Variable-size sets as a list, and the memory-mapped array with lengths.
    sets = [np.array(ims[i][: int(n)]) for i, n in enumerate(lengths)]
    torch.testing.assert_close(inf.encode_images(sets), expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(inf.encode_images(ims, lengths), expected, atol=1e-5, rtol=1e-4)
    captions = (root / 'testall_caps.txt').read_text().splitlines()[:9]
    tok = inf.tokenizer
    with torch.no_grad():
        for caption, emb in zip(captions, inf.encode_texts(captions), strict=True):
            ids = torch.tensor([tok.encode(caption)[0]])
            own = model.head.embed_text(model.encode_text(ids, torch.tensor([ids.shape[1]])))
            torch.testing.assert_close(emb, own[0], atol=1e-5, rtol=1e-4)
    # A caption that happens to name an existing file is still a caption.
    named = tmp_path / captions[0].replace(' ', '_')
    named.write_text('x')
    monkeypatch.chdir(tmp_path)
    torch.testing.assert_close(
        inf.embed([named.name]), inf.encode_texts([named.name]), atol=0, rtol=0
    )
    hits = inf.retrieve(captions[0], inf.encode_images(ims), topk=3, tie_rule='optimistic')
    assert len(hits[0]) == 3


def test_inferencer_index_and_large_gallery_retrieval(region_model):
    root, vocab, ckpt, _ = region_model
    inf = VSEInferencer(DEMO, ckpt, device='cpu', show_progress=False, vocab=vocab)
    ims = np.load(root / 'testall_ims.npy', mmap_mode='r')
    index = inf.build_index(ims, 'image', backend='auto')
    gallery = inf.encode_images(ims)
    query = inf.encode_texts(['a cat', 'two dogs'])
    expected = reference_topk(float64_rows(query, gallery), 4, 'published')
    via_index = inf.retrieve(query, index, topk=4)
    chunked = inf.retrieve(query, gallery, topk=4, chunk_size=5)
    assert [[i for i, _ in row] for row in via_index] == expected
    assert [[i for i, _ in row] for row in chunked] == expected


@pytest.mark.slow
def test_retrieve_tool_on_precomputed_features(region_model):
    root, vocab, ckpt, _ = region_model
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / 'tools' / 'retrieve.py'),
            DEMO,
            str(ckpt),
            *('--ims', str(root / 'testall_ims.npy'), '--ids', str(root / 'testall_ids.txt')),
            *('--captions', str(root / 'testall_caps.txt'), '--vocab', str(vocab)),
            *('--query-caption', '7', '--query-image', '2', '--topk', '60', '--device', 'cpu'),
        ],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    ids = (root / 'testall_ids.txt').read_text().split()
    t2i, i2t = out.split('image-to-text')
    # Caption 7 belongs to image 1 (5 captions an image): the one starred image.
    assert t2i.count(' *') == 1 and f'{ids[1]} *' in t2i
    # Image 2's captions are lines 10..14: five starred, and only those.
    starred = [line for line in i2t.splitlines() if line.endswith(' *')]
    assert len(starred) == 5 and all(f'[{c}]' in ''.join(starred) for c in range(10, 15))
