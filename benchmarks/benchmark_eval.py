"""Benchmark the retrieval evaluation against the per-row argsort reference (docs/vse.md#evaluation-protocol).

On random embeddings of COCO-5K size (5000 images, 25000 captions, 1024-d), times the
full evaluation -- the 5K result plus the 5-fold 1K average -- of
``gpo_plugin.evaluation.VSERetrievalMetric`` (chunked float32 counting certified by error
bands, float64 rescoring of the candidates within them, argsort only for the rows with a
float64 tie or near-tie) and of ``benchmarks/references/retrieval.py`` (the published
computation: float64 score matrix of the float32 embeddings, a Python loop over rows with
argsort, on CPU), interleaved in the same process (``harness.py``), and checks
that every number is identical.

Usage:
    python benchmarks/benchmark_eval.py [--device cuda] [--images 5000] [--dim 1024] [--collapsed]
"""

from __future__ import annotations

import argparse
import sys

import torch
from harness import add_common_args, describe_run, setup, time_interleaved

from gpo_plugin.evaluation import VSERetrievalMetric

from references.retrieval import reference_evaluation

BOUND = 'lower bound: the float32 score product alone (images x all captions, once)'


def embeddings(n_img: int, k: int, dim: int, seed: int = 0, collapsed: bool = False):
    """Unit vectors with captions near their image, so ranks cover the whole range; or,
    ``collapsed``, all within about 1e-3 of one direction, as an untrained model gives them
    (every score near every other: the certification bands hold many candidates)."""
    gen = torch.Generator().manual_seed(seed)
    txt_img = torch.arange(n_img).repeat_interleave(k)
    if collapsed:
        base = torch.randn(dim, generator=gen)
        img = base + 1e-3 * torch.randn(n_img, dim, generator=gen)
        txt = base + 1e-3 * torch.randn(n_img * k, dim, generator=gen)
        img, txt = (torch.nn.functional.normalize(x, dim=1) for x in (img, txt))
        return img, txt, txt_img
    img = torch.nn.functional.normalize(torch.randn(n_img, dim, generator=gen), dim=1)
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
    parser.add_argument(
        '--collapsed',
        action='store_true',
        help='embeddings crowded around one direction (an untrained model)',
    )
    add_common_args(parser, warmup=0)
    args = parser.parse_args()
    device = setup(args)
    img, txt, txt_img = embeddings(
        args.images, args.captions_per_image, args.dim, collapsed=args.collapsed
    )
    # The stored results of the metric carry one image embedding per image (every k-th).
    if args.captions_per_image != 5:
        raise SystemExit('fast_evaluation assumes 5 captions per image')
    img_dev, txt_dev = img.to(device), txt.to(device)
    methods = {
        'reference: float64 score matrix + argsort loops (the published evaluation)': lambda: (
            reference_evaluation(img.numpy(), txt.numpy(), txt_img.numpy(), args.fold_size)
        ),
        'VSERetrievalMetric (float32 counts certified by error bands, float64 inside them)': lambda: (
            fast_evaluation(img_dev, txt_dev, txt_img, args.fold_size)
        ),
        # Every exact method needs every score: this product bounds the speed-up.
        BOUND: lambda: img_dev @ txt_dev.t(),
    }
    results = time_interleaved(methods, args.repeats, args.warmup, device)
    shapes = (
        f'{args.images} images x {args.captions_per_image} captions, {args.dim}-d unit '
        f'vectors{" within ~1e-3 of one direction" if args.collapsed else ""}; '
        f'full set + {args.images // args.fold_size}-fold {args.fold_size}'
    )
    describe_run(
        f'Retrieval evaluation ({args.images} images + folds of {args.fold_size})',
        device,
        args,
        shapes,
    )
    ref = results[next(iter(methods))]
    print('| implementation | time (s) | speed-up | numbers identical to the reference |')
    print('|---|---|---|---|')
    all_identical = True
    for label, timing in results.items():
        if label == BOUND:
            print(
                f'| {label} | {timing.cell(unit=1, digits=2)} | {ref.median / timing.median:.1f}x | - |'
            )
            continue
        metrics = timing.output
        # Ours also carries each fold, the folds' std and the tie rule (published, as the
        # reference's argsort).
        identical = metrics.get('tie_rule', 'published') == 'published' and all(
            metrics.get(k) == ref.output[k] for k in ref.output
        )
        all_identical &= identical
        print(
            f'| {label} | {timing.cell(unit=1, digits=2)} | '
            f'{ref.median / timing.median:.1f}x | {identical} |'
        )
    fast = results[
        'VSERetrievalMetric (float32 counts certified by error bands, float64 inside them)'
    ].output
    print(
        f'\nrSum {fast["rsum"]:.2f} ({args.images} images), '
        f'{fast[f"fold{args.fold_size}_rsum"]:.2f} (folds of {args.fold_size})'
    )
    if not all_identical:
        sys.exit('the numbers differ from the reference')


if __name__ == '__main__':
    main()
