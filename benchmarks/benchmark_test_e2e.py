"""Benchmark ``tools/test.py`` end to end against the published VSE∞ evaluation flow.

Builds a BiGRU region model in the published layout (random weights), saves it as the
published ``model_best.pth``, converts it with ``tools/model_converters/convert_vse_infty.py`` and writes a
COCO-like precomputed test set (``testall_ims.npy`` of (N, 36, 2048) regions, 5 captions an
image). Then times, interleaved in one process:

- **published**: the published evaluation as ``evalrank`` runs it: a loader of (image,
  caption) pairs (each image encoded once per caption, captions sorted by length within a
  batch of 128), ``no_grad`` encoding, then ``i2t``/``t2i`` with a per-row argsort on the
  full set and on the 5 folds (``benchmarks/references/retrieval.py``);
- **ours**: ``tools/test.py CONFIG CKPT`` (:func:`gpo_plugin.cli.test.main`), building the
  Runner, encoding and ranking both protocols.

Both read the same files with the same checkpoint, in the main process (no loader workers);
the numbers of both are printed and compared.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/benchmark_test_e2e.py [--images 5000] [--reduced]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from harness import add_common_args, describe_run, setup, time_interleaved

from gpo_plugin.cli import test as test_cli

from references.retrieval import reference_evaluation
from references.vse_infty import (
    PublishedBiGRUTextEncoder,
    PublishedPrecompImageEncoder,
    randomize_,
    save_published_checkpoint,
)

# The converter is a tool of the checkout (tools/model_converters), run as users run it.
CONVERTER = (
    Path(__file__).resolve().parents[1] / 'tools' / 'model_converters' / 'convert_vse_infty.py'
)
REGIONS, FEAT_DIM, EMBED_DIM, WORD_DIM, K = 36, 2048, 1024, 300, 5


def convert(src: Path, dst: Path, vocab: Path) -> None:
    """``tools/model_converters/convert_vse_infty.py SRC DST --vocab VOCAB``."""
    argv = [sys.executable, str(CONVERTER), str(src), str(dst), '--vocab', str(vocab)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f'{" ".join(argv)} failed:\n{done.stderr}')


def make_data(root: Path, n_images: int, n_words: int = 2000, seed: int = 0) -> list[str]:
    """``testall_{ims.npy,caps.txt,ids.txt}`` under ``root``; returns the published word list
    (specials first). Captions are 8-20 plain lower-case words (COCO's usual range), so
    the published word split and ours agree."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    ims = rng.standard_normal((n_images, REGIONS, FEAT_DIM), dtype=np.float32)
    np.save(root / 'testall_ims.npy', ims)
    words = [f'w{i}' for i in range(n_words)]
    captions = [' '.join(rng.choice(words, size=rng.integers(8, 21))) for _ in range(n_images * K)]
    (root / 'testall_caps.txt').write_text('\n'.join(captions) + '\n', encoding='utf-8')
    ids = '\n'.join(str(i) for i in range(n_images)) + '\n'
    (root / 'testall_ids.txt').write_text(ids, encoding='utf-8')
    return ['<pad>', '<start>', '<end>', '<unk>', '<mask>', *words]


def published_encode_data(img_enc, txt_enc, ims, captions, word2idx, batch_size=128):
    """The published ``encode_data``: (image, caption) pairs, captions sorted by length in
    each batch, images encoded with every one of their captions."""
    n = len(captions)
    img_embs, cap_embs = np.zeros((n, EMBED_DIM), np.float32), np.zeros((n, EMBED_DIM), np.float32)
    for start in range(0, n, batch_size):
        index = list(range(start, min(start + batch_size, n)))
        tokens = [
            [word2idx['<start>'], *(word2idx.get(w, 3) for w in captions[i].split()), 2]
            for i in index
        ]
        order = sorted(range(len(index)), key=lambda j: len(tokens[j]), reverse=True)
        index, tokens = [index[j] for j in order], [tokens[j] for j in order]
        lengths = torch.tensor([len(t) for t in tokens])
        ids = torch.zeros(len(tokens), int(lengths.max()), dtype=torch.long)
        for row, t in enumerate(tokens):
            ids[row, : len(t)] = torch.tensor(t)
        images = torch.from_numpy(np.stack([ims[i // K] for i in index]))
        with torch.no_grad():
            img_emb = img_enc(images, torch.full((len(index),), REGIONS))
            cap_emb = txt_enc(ids, lengths)
        img_embs[index], cap_embs[index] = img_emb.numpy(), cap_emb.numpy()
    return img_embs, cap_embs


def published_evalrank(img_enc, txt_enc, root: Path, word2idx, fold_size: int) -> dict:
    ims = np.load(root / 'testall_ims.npy', mmap_mode='r')
    captions = (root / 'testall_caps.txt').read_text(encoding='utf-8').splitlines()
    img_embs, cap_embs = published_encode_data(img_enc, txt_enc, ims, captions, word2idx)
    img_embs = img_embs[::K]  # one row per image
    txt_img = np.arange(len(img_embs)).repeat(K)
    return reference_evaluation(img_embs, cap_embs, txt_img, fold_size=fold_size)


def ours(config: str, ckpt: str, root: Path, fold_size: int) -> dict:
    argv = [config, ckpt, '--data-root', str(root), '--work-dir', str(root.parent / 'work')]
    argv += [
        '--cfg-options',
        'test_dataloader.num_workers=0',
        f'test_evaluator.fold_size={fold_size}',
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        return test_cli.main(argv)


def compare(published: dict, metrics: dict, fold_size: int) -> list[tuple[str, float, float]]:
    """(name, published, ours) for R@1/5/10 and rSum of both protocols."""
    rows = []
    prefix = next(k for k in metrics if k.endswith('rsum') and 'fold' not in k)[: -len('rsum')]
    for protocol, ours_prefix, ref_prefix in (
        ('full', prefix, ''),
        (f'{fold_size} folds', f'{prefix}fold{fold_size}_', f'fold{fold_size}_'),
    ):
        for key in ('i2t_R@1', 'i2t_R@5', 'i2t_R@10', 't2i_R@1', 't2i_R@5', 't2i_R@10', 'rsum'):
            rows.append(
                (f'{protocol} {key}', published[ref_prefix + key], metrics[ours_prefix + key])
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=5000, help='test images (5 captions each)')
    parser.add_argument(
        '--reduced', action='store_true', help='500 images, 100-image folds (a quick check)'
    )
    add_common_args(parser, repeats=5, warmup=0)
    args = parser.parse_args()
    setup(args)
    n_images = 500 if args.reduced else args.images
    fold_size = n_images // 5
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / 'coco' / 'precomp'
        words = make_data(root, n_images)
        vocab = tmp / 'published_vocab.json'
        word2idx = {w: i for i, w in enumerate(words)}
        vocab.write_text(json.dumps({'word2idx': word2idx, 'idx2word': {}}))
        img_enc = randomize_(PublishedPrecompImageEncoder(FEAT_DIM, EMBED_DIM), seed=1).eval()
        txt_enc = randomize_(
            PublishedBiGRUTextEncoder(len(words), WORD_DIM, EMBED_DIM), seed=2
        ).eval()
        src = tmp / 'model_best.pth'
        save_published_checkpoint(
            str(src), img_enc, txt_enc, data_name='coco_precomp', precomp_enc_type='basic'
        )
        ckpt = tmp / 'converted.pth'
        convert(src, ckpt, vocab)
        timings = time_interleaved(
            {
                'published encode_data + i2t/t2i': lambda: published_evalrank(
                    img_enc, txt_enc, root, word2idx, fold_size
                ),
                'ours: tools/test.py': lambda: ours(f'{ckpt}.py', str(ckpt), root, fold_size),
            },
            repeats=args.repeats,
            warmup=args.warmup,
        )
    published, ours_t = timings.values()
    describe_run(
        'tools/test.py end to end vs the published evaluation (BiGRU region model)',
        torch.device('cpu'),
        args,
        f'{n_images} images x {REGIONS} regions x {FEAT_DIM}, {n_images * K} captions '
        f'(8-20 words), embed {EMBED_DIM}; full set + 5 folds of {fold_size}',
    )
    print('| method | seconds | ratio |')
    print('|---|---|---|')
    print(f'| published encode_data + i2t/t2i | {published.cell(1, 2)} | 1.00x |')
    print(
        f'| ours: tools/test.py | {ours_t.cell(1, 2)} | {published.median / ours_t.median:.2f}x |'
    )
    rows = compare(published.output, ours_t.output, fold_size)
    worst = max(abs(p - o) for _, p, o in rows)
    print(f'\nmetrics (published / ours), largest difference {worst:.3g}:')
    for name, p, o in rows:
        print(f'- {name}: {p:.2f} / {o:.2f}')
    if worst > 0.5:
        sys.exit('the two evaluations disagree')


if __name__ == '__main__':
    main()
