"""PML's GlobalEmbeddingSpaceTester at SOP size with PML's AccuracyCalculator against
gpo_plugin.pml.KNNAccuracyCalculator (symmetric and faiss k-NN; torch with --torch-knn), same
embeddings, same process, interleaved (``harness.py``). Prints a markdown table of values,
wall time, CPU time, peak extra memory and ratios against PML.

    python benchmarks/benchmark_pml_tester.py [--num 60502 --classes 11316] [--repeats 5]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import torch
from benchmark_metrics import PeakRSS, sop_like_labels
from harness import add_common_args, describe_run, setup, time_interleaved
from pytorch_metric_learning import testers
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from gpo_plugin.evaluation.functional.knn_search import faiss
from gpo_plugin.pml import KNNAccuracyCalculator

KEYS = ('precision_at_1', 'r_precision', 'mean_average_precision_at_r')
PML = 'PML AccuracyCalculator (faiss)'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num', type=int, default=60502)
    parser.add_argument('--classes', type=int, default=11316)
    parser.add_argument('--dim', type=int, default=128)
    parser.add_argument('--skip-pml', action='store_true', help='only time this package')
    parser.add_argument('--torch-knn', action='store_true', help='also time the torch k-NN')
    add_common_args(parser, warmup=0)
    return parser.parse_args()


def tester_run(calculator, dataset, memory: list[float], cpu: list[float]):
    """One ``tester.test`` (embedding pass + accuracies) returning its values; records peak
    extra RSS (MiB) and CPU seconds of this process (robust to other load on the machine)."""

    def run() -> dict:
        tester = testers.GlobalEmbeddingSpaceTester(
            accuracy_calculator=calculator,
            batch_size=4096,
            dataloader_num_workers=0,
            data_device=torch.device('cpu'),
        )
        with PeakRSS() as peak:
            cpu_start = time.process_time()
            result = tester.test({'val': dataset}, 1, torch.nn.Identity())['val']
            cpu.append(time.process_time() - cpu_start)
        memory.append(peak.extra_mib)
        return {k: result[f'{k}_level0'] for k in KEYS}

    return run


def main() -> None:
    args = parse_args()
    device = setup(args)
    if device.type != 'cpu':  # PML's tester and faiss run on CPU here
        print('benchmark_pml_tester compares CPU k-NN backends; skipped for', device)
        return
    logging.getLogger('PML').setLevel(logging.WARNING)
    generator = torch.Generator().manual_seed(0)
    labels = sop_like_labels(args.num, args.classes, generator)
    centers = torch.randn(args.classes, args.dim, generator=generator)
    embeddings = centers[labels] + 1.2 * torch.randn(args.num, args.dim, generator=generator)
    dataset = torch.utils.data.TensorDataset(embeddings, labels)

    common = dict(include=KEYS, k='max_bin_count', device=device)
    calculators = {}
    if not args.skip_pml:
        calculators[PML] = AccuracyCalculator(**common)
    backends = ['symmetric'] + (['faiss'] if faiss is not None else [])
    for backend in backends + (['torch'] if args.torch_knn else []):
        calculators[f'KNNAccuracyCalculator ({backend})'] = KNNAccuracyCalculator(
            backend=backend, **common
        )
    memory = {name: [] for name in calculators}
    cpu = {name: [] for name in calculators}
    methods = {
        name: tester_run(calc, dataset, memory[name], cpu[name])
        for name, calc in calculators.items()
    }
    results = time_interleaved(methods, args.repeats, args.warmup, device)

    shapes = (
        f'{args.num} x {args.dim}-d embeddings, {args.classes} classes (sizes 2-12), '
        'query = reference, k = max_bin_count, GlobalEmbeddingSpaceTester.test'
    )
    describe_run("PML tester with PML's and our accuracy calculator", device, args, shapes)
    print(
        '| calculator | P@1 | R-Prec | MAP@R | tester.test wall (s) | CPU (s) | peak extra RSS '
        '(MiB) | speed-up vs PML: wall | CPU | memory vs PML |\n|---|---|---|---|---|---|---|---|---|---|'
    )
    counted = slice(args.warmup, None)
    cpu_median = {name: statistics.median(cpu[name][counted]) for name in results}
    peak = {name: max(memory[name]) for name in results}
    for name, timing in results.items():
        cells = ' | '.join(f'{timing.output[k]:.6f}' for k in KEYS)
        ratios = 'n/a | n/a | n/a'
        if PML in results:
            ratios = (
                f'{results[PML].median / timing.median:.2f}x | '
                f'{cpu_median[PML] / cpu_median[name]:.2f}x | {peak[name] / max(peak[PML], 1e-9):.3f}x'
            )
        print(
            f'| {name} | {cells} | {timing.cell(unit=1, digits=2)} | {cpu_median[name]:.2f} | '
            f'{peak[name]:.0f} | {ratios} |'
        )
    if PML in results:
        for name, timing in results.items():
            worst = max(abs(timing.output[k] - results[PML].output[k]) for k in KEYS)
            print(f'max |{name} - PML| = {worst:.2e}')


if __name__ == '__main__':
    main()
