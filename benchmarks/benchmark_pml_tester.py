"""PML's GlobalEmbeddingSpaceTester at SOP size with PML's AccuracyCalculator against
gpo_plugin.pml.KNNAccuracyCalculator (faiss and torch k-NN), same embeddings, same process.
Prints a markdown table of values, wall time, peak extra memory and ratios against PML.

    OMP_NUM_THREADS=1 nice python benchmarks/benchmark_pml_tester.py [--num 60502 --classes 11316]
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import torch
from benchmark_metrics import PeakRSS, sop_like_labels
from harness import machine
from pytorch_metric_learning import testers
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from gpo_plugin.evaluation.functional.knn_metrics import faiss
from gpo_plugin.pml import KNNAccuracyCalculator

KEYS = ('precision_at_1', 'r_precision', 'mean_average_precision_at_r')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num', type=int, default=60502)
    parser.add_argument('--classes', type=int, default=11316)
    parser.add_argument('--dim', type=int, default=128)
    parser.add_argument('--skip-pml', action='store_true', help='only time this package')
    return parser.parse_args()


def run_tester(calculator, dataset) -> tuple[dict, float, float, float]:
    """One ``tester.test`` (embedding pass + accuracies): values, wall seconds, peak extra MiB,
    CPU seconds of this process (robust to other load on a shared machine)."""
    tester = testers.GlobalEmbeddingSpaceTester(
        accuracy_calculator=calculator,
        batch_size=4096,
        dataloader_num_workers=0,
        data_device=torch.device('cpu'),
    )
    with PeakRSS() as memory:
        start, cpu_start = time.perf_counter(), time.process_time()
        result = tester.test({'val': dataset}, 1, torch.nn.Identity())['val']
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {k: result[f'{k}_level0'] for k in KEYS}, seconds, memory.extra_mib, cpu


def main() -> None:
    args = parse_args()
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    logging.getLogger('PML').setLevel(logging.WARNING)
    generator = torch.Generator().manual_seed(0)
    labels = sop_like_labels(args.num, args.classes, generator)
    centers = torch.randn(args.classes, args.dim, generator=generator)
    embeddings = centers[labels] + 1.2 * torch.randn(args.num, args.dim, generator=generator)
    dataset = torch.utils.data.TensorDataset(embeddings, labels)

    cpu = torch.device('cpu')
    common = dict(include=KEYS, k='max_bin_count', device=cpu)
    calculators = {}
    if not args.skip_pml:
        calculators['PML AccuracyCalculator (faiss)'] = AccuracyCalculator(**common)
    for backend in (['faiss'] if faiss is not None else []) + ['torch']:
        calculators[f'KNNAccuracyCalculator ({backend})'] = KNNAccuracyCalculator(
            backend=backend, **common
        )
    runs = {name: run_tester(calc, dataset) for name, calc in calculators.items()}

    print(
        f'GlobalEmbeddingSpaceTester benchmark: {args.num} x {args.dim}-d embeddings, '
        f'{args.classes} classes (sizes 2-12), query = reference, k = max_bin_count, '
        f'{torch.get_num_threads()} thread(s), {machine("cpu")}, '
        f'{time.strftime("%Y-%m-%d")}\n'
    )
    baseline = runs.get('PML AccuracyCalculator (faiss)')
    print(
        '| calculator | P@1 | R-Prec | MAP@R | tester.test wall (s) | CPU (s) | peak extra RSS '
        '(MiB) | speed-up vs PML: wall | CPU | memory vs PML |\n|---|---|---|---|---|---|---|---|---|---|'
    )
    for name, (values, seconds, mib, cpu) in runs.items():
        cells = ' | '.join(f'{values[k]:.6f}' for k in KEYS)
        ratios = 'n/a | n/a | n/a'
        if baseline:
            ratios = (
                f'{baseline[1] / seconds:.1f}x | {baseline[3] / cpu:.1f}x | '
                f'{mib / max(baseline[2], 1e-9):.3f}x'
            )
        print(f'| {name} | {cells} | {seconds:.2f} | {cpu:.2f} | {mib:.0f} | {ratios} |')
    if baseline:
        for name, (values, *_) in runs.items():
            worst = max(abs(values[k] - baseline[0][k]) for k in KEYS)
            print(f'max |{name} - PML| = {worst:.2e}')


if __name__ == '__main__':
    main()
