"""Metric-learning evaluation at SOP size: ``retrieval_metrics`` (chunked k-NN, vectorised
metrics) against PML's ``AccuracyCalculator`` (faiss k-NN) on the same random embeddings in the
same process. Prints a markdown table of values, wall time, peak extra memory and ratios.

    OMP_NUM_THREADS=2 python benchmarks/benchmark_metrics.py [--num 60502 --classes 11316 --dim 128]
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import torch

from gpo_plugin.evaluation.functional.knn_metrics import (
    faiss,
    knn,
    metrics_from_neighbours,
    relevant_counts,
)

KEYS = ('precision_at_1', 'r_precision', 'mean_average_precision_at_r')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num', type=int, default=60502)
    parser.add_argument('--classes', type=int, default=11316)
    parser.add_argument('--dim', type=int, default=128)
    parser.add_argument('--skip-pml', action='store_true', help='only time this package')
    return parser.parse_args()


def sop_like_labels(num: int, classes: int, generator: torch.Generator) -> torch.Tensor:
    """Class sizes from 2 to 12 like SOP's test set, summing to ``num``."""
    sizes = torch.full((classes,), 2)
    extra = torch.multinomial(
        torch.ones(classes), num - 2 * classes, replacement=True, generator=generator
    )
    sizes += torch.bincount(extra, minlength=classes).clamp_max(10)
    while int(sizes.sum()) < num:  # top up classes below 12 after the clamp
        room = (sizes < 12).nonzero()[:, 0]
        sizes[room[: num - int(sizes.sum())]] += 1
    return torch.repeat_interleave(torch.arange(classes), sizes)[
        torch.randperm(num, generator=generator)
    ]


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 5 ms from /proc."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    def _poll(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        with open('/proc/self/statm') as handle:
            return int(handle.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')

    @property
    def extra_mib(self) -> float:
        return (self.peak - self.base) / 2**20


def measure(fn):
    with PeakRSS() as memory:
        start = time.perf_counter()
        values = fn()
        seconds = time.perf_counter() - start
    return values, seconds, memory.extra_mib


def main() -> None:
    args = parse_args()
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    generator = torch.Generator().manual_seed(0)
    labels = sop_like_labels(args.num, args.classes, generator)
    centers = torch.randn(args.classes, args.dim, generator=generator)
    embeddings = centers[labels] + 1.2 * torch.randn(args.num, args.dim, generator=generator)
    embeddings = torch.nn.functional.normalize(embeddings, dim=1)

    max_class = int(torch.bincount(labels).max()) - 1  # k of MAP@R, leave-one-out
    runs, knn_seconds = {}, {}

    def ours(backend: str):
        """retrieval_metrics, with its k-NN step timed on its own."""
        timing = {}

        def run():
            relevant = relevant_counts(labels, labels, self_excluded=True)
            k = min(max(int(relevant.max()), 8), len(labels) - 1)
            start = time.perf_counter()
            index = knn(embeddings, k, backend=backend)
            timing['knn'] = time.perf_counter() - start
            return metrics_from_neighbours(labels[index], labels, relevant)

        result = measure(run)
        return result, timing['knn']

    backends = (['faiss'] if faiss is not None else []) + ['torch']
    for backend in backends:
        name = f'gpo_plugin, {backend} k-NN'
        runs[name], knn_seconds[name] = ours(backend)
    pml = 'PML AccuracyCalculator (faiss)'
    if not args.skip_pml:
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

        calc = AccuracyCalculator(include=KEYS, k='max_bin_count')
        runs[pml] = measure(lambda: calc.get_accuracy(embeddings, labels))
        # PML's k-NN step alone (k + 1 neighbours, self removed), as inside get_accuracy.
        knn_seconds[pml] = measure(lambda: calc.knn_func(embeddings, max_class, embeddings, True))[
            1
        ]

    print(
        f'Metric benchmark: {args.num} x {args.dim}-d embeddings, {args.classes} classes '
        f'(sizes 2-12), leave-one-out, {torch.get_num_threads()} thread(s)\n'
    )
    reference = runs.get(pml)
    print(
        '| implementation | P@1 | R-Prec | MAP@R | total (s) | of which k-NN (s) | rest (s) | '
        'peak extra RSS (MiB) | speed-up vs PML: total | rest |\n|---|---|---|---|---|---|---|---|---|---|'
    )
    for name, (values, seconds, mib) in runs.items():
        rest = max(seconds - knn_seconds[name], 1e-3)
        if reference:
            pml_rest = reference[1] - knn_seconds[pml]
            speedup = f'{reference[1] / seconds:.1f}x | {pml_rest / rest:.0f}x'
        else:
            speedup = 'n/a | n/a'
        cells = ' | '.join(f'{values[k]:.6f}' for k in KEYS)
        print(
            f'| {name} | {cells} | {seconds:.2f} | {knn_seconds[name]:.2f} | {rest:.2f} | '
            f'{mib:.0f} | {speedup} |'
        )
    if reference:
        for name, (values, _, _) in runs.items():
            worst = max(abs(values[k] - reference[0][k]) for k in KEYS)
            print(f'max |{name} - PML| = {worst:.2e}')


if __name__ == '__main__':
    main()
