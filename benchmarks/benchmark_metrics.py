"""Metric-learning evaluation at SOP size: ``retrieval_metrics`` end to end (symmetric block
k-NN, as ``backend='auto'`` picks on CPU, or the faiss k-NN; the tie-order check with its faiss
re-search; vectorised metrics) against PML's
``AccuracyCalculator`` (faiss k-NN) on the same random embeddings in the same process,
interleaved (``harness.py``). Prints a markdown table of values, wall time,
the k-NN's share, peak extra memory and ratios.

    python benchmarks/benchmark_metrics.py [--device cuda] [--num 60502 --classes 11316 --dim 128]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

import torch
from harness import add_common_args, describe_run, setup, time_interleaved

from gpo_plugin.evaluation.functional import knn_search, ordered_knn
from gpo_plugin.evaluation.functional.knn_metrics import retrieval_metrics
from gpo_plugin.evaluation.functional.knn_search import faiss

KEYS = ('precision_at_1', 'r_precision', 'mean_average_precision_at_r')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num', type=int, default=60502)
    parser.add_argument('--classes', type=int, default=11316)
    parser.add_argument('--dim', type=int, default=128)
    parser.add_argument('--skip-pml', action='store_true', help='only time this package')
    parser.add_argument(
        '--torch-knn', action='store_true', help='also time the torch k-NN backend on CPU'
    )
    add_common_args(parser, warmup=0)
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


def measured(fn, memory: list[float], knn_time: list[float] | None = None):
    """``fn`` wrapped to record its peak extra RSS (MiB) into ``memory``."""

    def run():
        with PeakRSS() as peak:
            values = fn(knn_time)
        memory.append(peak.extra_mib)
        return values

    return run


def main() -> None:
    args = parse_args()
    device = setup(args)
    generator = torch.Generator().manual_seed(0)
    labels = sop_like_labels(args.num, args.classes, generator)
    centers = torch.randn(args.classes, args.dim, generator=generator)
    embeddings = centers[labels] + 1.2 * torch.randn(args.num, args.dim, generator=generator)
    embeddings = torch.nn.functional.normalize(embeddings, dim=1)
    emb_dev, labels_dev = embeddings.to(device), labels.to(device)
    max_class = int(torch.bincount(labels).max()) - 1  # k of MAP@R, leave-one-out

    researched: list[int] = []

    def ours(backend: str):
        """retrieval_metrics end to end, with its k-NN search timed on its own and the
        queries re-searched by the tie-order check counted."""

        def run(knn_time: list[float]):
            search, re_search = knn_search.knn, ordered_knn._OrderCheck._faiss_rows
            spent, rows = [0.0], [0]

            def timed_search(*a, **kw):
                start = time.perf_counter()
                found = search(*a, **kw)
                spent[0] += time.perf_counter() - start
                return found

            def counted(checker, which, width):
                rows[0] += which.numel()
                return re_search(checker, which, width)

            knn_search.knn, ordered_knn._OrderCheck._faiss_rows = timed_search, counted
            try:
                values = retrieval_metrics(emb_dev, labels_dev, backend=backend)
            finally:
                knn_search.knn, ordered_knn._OrderCheck._faiss_rows = search, re_search
            knn_time.append(spent[0])
            researched.append(rows[0])
            return values

        return run

    # 'symmetric' is what backend='auto' picks for leave-one-out on CPU.
    backends = ['symmetric'] if device.type == 'cpu' else []
    if faiss is not None and device.type == 'cpu':
        backends.append('faiss')
    if args.torch_knn or device.type != 'cpu':
        backends.append('torch')
    memory: dict[str, list[float]] = {}
    knn_times: dict[str, list[float]] = {}
    methods = {}
    for backend in backends:
        name = f'gpo_plugin, {backend} k-NN'
        memory[name], knn_times[name] = [], []
        methods[name] = measured(ours(backend), memory[name], knn_times[name])
    pml = 'PML AccuracyCalculator (faiss, k=max_bin_count)'
    if not args.skip_pml:
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

        calc = AccuracyCalculator(include=KEYS, k='max_bin_count')
        memory[pml], knn_times[pml] = [], []

        def pml_run(knn_time: list[float]):
            start = time.perf_counter()
            # PML's k-NN step alone (k + 1 neighbours, self removed), as inside get_accuracy;
            # timed separately, before the full call that repeats it.
            calc.knn_func(embeddings, max_class, embeddings, True)
            knn_time.append(time.perf_counter() - start)
            return calc.get_accuracy(embeddings, labels)

        methods[pml] = measured(pml_run, memory[pml], knn_times[pml])
    results = time_interleaved(methods, args.repeats, args.warmup, device)
    if pml in results:  # the PML run did its k-NN twice: take the separate one off
        counted = knn_times[pml][args.warmup :]
        results[pml].seconds = [s - k for s, k in zip(results[pml].seconds, counted, strict=True)]

    shapes = (
        f'{args.num} x {args.dim}-d unit embeddings, {args.classes} classes (sizes 2-12), '
        'query = reference (leave-one-out)'
    )
    describe_run('Metric-learning evaluation (SOP size by default)', device, args, shapes)
    reference = results.get(pml)
    print(
        '| implementation | P@1 | R-Prec | MAP@R | total (s) | of which k-NN (s) | '
        'peak extra RSS (MiB) | speed-up vs PML, end to end |\n|---|---|---|---|---|---|---|---|'
    )
    for name, timing in results.items():
        values = timing.output
        knn_median = statistics.median(knn_times[name][args.warmup :])
        speedup = f'{reference.median / timing.median:.2f}x' if reference else 'n/a'
        cells = ' | '.join(f'{values[k]:.6f}' for k in KEYS)
        print(
            f'| {name} | {cells} | {timing.cell(unit=1, digits=2)} | {knn_median:.2f} | '
            f'{max(memory[name]):.0f} | {speedup} |'
        )
    if researched:
        print(
            f'\nqueries re-searched with faiss by the tie-order check: {max(researched)} '
            f'of {args.num}',
            end='',
        )
    if reference:
        for name, timing in results.items():
            worst = max(abs(timing.output[k] - reference.output[k]) for k in KEYS)
            print(f'\nmax |{name} - PML| = {worst:.2e}', end='')
        print()


if __name__ == '__main__':
    main()
