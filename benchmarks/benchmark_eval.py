"""Benchmark the retrieval evaluation against the per-row argsort reference (docs/vse.md#evaluation-protocol).

On random embeddings of COCO-5K size (5000 images, 25000 captions, 1024-d), times the
full evaluation -- the 5K result plus the 5-fold 1K average -- of
``gpo_plugin.evaluation.VSERetrievalMetric`` (chunked, no sorting) and of
``benchmarks/references/retrieval.py`` (a Python loop over rows with argsort), in
the same process, and checks that every number is identical.

Usage:
    python benchmarks/benchmark_eval.py [--images 5000] [--captions-per-image 5] [--dim 1024]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault('OMP_NUM_THREADS', '1')

import torch  # noqa: E402

from gpo_plugin.evaluation import VSERetrievalMetric  # noqa: E402

from references.retrieval import reference_evaluation  # noqa: E402


def embeddings(n_img: int, k: int, dim: int, seed: int = 0):
    """Unit vectors with captions near their image, so ranks cover the whole range."""
    gen = torch.Generator().manual_seed(seed)
    img = torch.nn.functional.normalize(torch.randn(n_img, dim, generator=gen), dim=1)
    txt_img = torch.arange(n_img).repeat_interleave(k)
    noise = torch.randn(n_img * k, dim, generator=gen)
    txt = torch.nn.functional.normalize(img[txt_img] + 0.25 * noise, dim=1)
    return img, txt, txt_img


def fast_evaluation(img, txt, txt_img, fold_size):
    metric = VSERetrievalMetric(fold_size=fold_size)
    return metric.compute_metrics(
        [
            (int(txt_img[c]), c, img[txt_img[c]] if c % 5 == 0 else None, txt[c])
            for c in range(len(txt))
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=5000)
    parser.add_argument('--captions-per-image', type=int, default=5)
    parser.add_argument('--dim', type=int, default=1024)
    parser.add_argument('--fold-size', type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))
    img, txt, txt_img = embeddings(args.images, args.captions_per_image, args.dim)
    # The stored results of the metric carry one image embedding per image (every k-th).
    assert args.captions_per_image == 5, 'fast_evaluation assumes 5 captions per image'

    start = time.perf_counter()
    fast = fast_evaluation(img, txt, txt_img, args.fold_size)
    fast_s = time.perf_counter() - start
    start = time.perf_counter()
    ref = reference_evaluation(img.numpy(), txt.numpy(), txt_img.numpy(), args.fold_size)
    ref_s = time.perf_counter() - start

    print(
        f'\nRetrieval evaluation, {args.images} images x {args.captions_per_image} captions, '
        f'{args.dim}-d, full set + {args.images // args.fold_size}-fold {args.fold_size}; '
        f'torch threads = {torch.get_num_threads()}'
    )
    rows = [
        ('reference (per-row argsort loops)', ref_s, ref),
        ('VSERetrievalMetric (blocked, no sort)', fast_s, fast),
    ]
    print(f'{"implementation":<46} {"seconds":>8} {"speed-up":>9} {"identical":>10}')
    all_identical = True
    for label, seconds, metrics in rows:
        identical = all(metrics[k] == ref[k] for k in ref) and set(metrics) == set(ref)
        all_identical &= identical
        print(f'{label:<46} {seconds:8.2f} {ref_s / seconds:8.1f}x {str(identical):>10}')
    print(f'5K rSum {fast["rsum"]:.2f}, 1K rSum {fast[f"fold{args.fold_size}_rsum"]:.2f}')
    if not all_identical:
        sys.exit('the numbers differ from the reference')


if __name__ == '__main__':
    main()
