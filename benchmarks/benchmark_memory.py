"""Resident memory of the three demos' real training loops: flat after warm-up, or FAIL.

Drives ``configs/vse_gpo_demo.py`` (mmengine Runner, BiGRU + GPO on variable-length region
sets and captions), ``configs/vse_gpo_demo_grid.py`` (Runner, EfficientNet-Lite0 grids with
random grid drops + MiniLM) and ``configs/pml/digits_gsp.py`` (PML trainer, GSP) with their
default settings for ``--iters`` training iterations each (epochs are repeated as needed;
the demos' own validation, checkpoints and hooks run as configured). The resident set size
(RSS) of the process is read after every iteration. The table compares the median RSS of the
``--window`` iterations right after warm-up (``--warmup-frac`` of the run) with the median of
the last ``--window`` (warm-up also lasts until the third epoch and until the first
validation has run: both allocate once what later epochs reuse); growth beyond ``--tolerance`` % is a FAIL and the script exits 1.
Medians over a window keep the allocator's ups and downs out of the comparison.

    python benchmarks/benchmark_memory.py [--iters 2000] [--demos vse grid pml]
        [--grid-image-size 224] [--grid-batch 32] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import statistics
import sys
import tempfile
from collections.abc import Callable

import torch
from harness import machine

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PAGE = os.sysconf('SC_PAGE_SIZE')


class Enough(Exception):
    """Raised from a hook once the requested number of iterations has run."""


def rss_bytes() -> int:
    """Resident set size of this process (second field of /proc/self/statm, in pages)."""
    with open('/proc/self/statm') as handle:
        return int(handle.read().split()[1]) * PAGE


class Recorder:
    """Collects the RSS after each iteration and stops the run after ``total`` of them;
    remembers the first iteration of the third epoch, before which warm-up cannot end (the
    grid demo unfreezes its backbone, and so allocates its optimizer state, in epoch 2)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.samples: list[int] = []
        self.third_epoch_start: int | None = None
        self.first_val_end: int | None = None  # iterations run when the first validation ended
        self.epochs: list[int] = []

    def validated(self) -> None:
        if self.first_val_end is None:
            self.first_val_end = len(self.samples)

    def record(self, epoch: int) -> None:
        """``epoch``: 0-based epoch of the iteration that just ran."""
        if epoch >= 2 and self.third_epoch_start is None:
            self.third_epoch_start = len(self.samples)
        self.samples.append(rss_bytes())
        self.epochs.append(epoch)
        if len(self.samples) >= self.total:
            raise Enough


def run_vse(config: str, recorder: Recorder, args: argparse.Namespace, work_dir: str) -> None:
    """One Runner training of a VSE demo config, recorder hooked after each iteration."""
    from mmengine.config import Config
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    from gpo_plugin.cli.runner_config import set_data_root
    from gpo_plugin.datasets import set_pipeline_tokenizer
    from gpo_plugin.demo import ensure_grid_demo_data, ensure_vse_demo_data

    cfg = Config.fromfile(osp.join(ROOT, 'configs', config))
    cfg.work_dir = work_dir
    if 'grid' in config:
        data_dir = osp.join(ROOT, 'data/demo/grid')
        ensure_grid_demo_data(data_dir)
        cfg.train_dataloader.dataset.data_root = data_dir
        cfg.test_dataloader.dataset.data_root = data_dir
        _resize_grid(cfg, args.grid_image_size)
        cfg.train_dataloader.batch_size = args.grid_batch
    else:
        precomp, vocab = ensure_vse_demo_data(osp.join(ROOT, 'data/demo/vse'))
        cfg.model.txt_enc.vocab_file = str(vocab)
        set_data_root(cfg, str(precomp))
        set_pipeline_tokenizer(cfg, dict(type='VocabTokenizer', vocab_file=str(vocab)))
    cfg.train_cfg.max_epochs = 10**6  # the recorder ends the run

    class RecordRSS(Hook):
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            recorder.record(runner.epoch)

        def after_val_epoch(self, runner, metrics=None) -> None:
            recorder.validated()

    runner = Runner.from_cfg(cfg)
    runner.register_hook(RecordRSS(), priority='LOWEST')
    try:
        runner.train()
    except Enough:
        pass


def _resize_grid(cfg, size: int) -> None:
    for loader in ('train_dataloader', 'test_dataloader'):
        for step in cfg[loader].dataset.pipeline:
            if step['type'] == 'Resize':
                step['scale'] = (size, size)


def run_pml(recorder: Recorder, args: argparse.Namespace, work_dir: str) -> None:
    """The PML digits demo's GSP run (``tools/demos/pml_digits_demo.py``), recorder chained after
    PML's own end-of-iteration hook."""
    import logging

    from gpo_plugin.pml.runner import build_session, load_config

    logging.getLogger('PML').setLevel(logging.WARNING)
    cfg = load_config(osp.join(ROOT, 'configs/pml/digits_gsp.py'))
    cfg.train_cfg.max_epochs = 10**6
    cfg.pml.device = args.device
    session = build_session(cfg, work_dir)
    pml_hook = session.trainer.end_of_iteration_hook

    def hook(trainer) -> None:
        pml_hook(trainer)
        recorder.record(trainer.epoch - 1)  # PML counts epochs from 1

    session.trainer.end_of_iteration_hook = hook
    pml_epoch_hook = session.trainer.end_of_epoch_hook
    test_interval = int(cfg.train_cfg.get('val_interval', 1))

    def epoch_hook(trainer):
        result = pml_epoch_hook(trainer)
        if trainer.epoch % test_interval == 0:  # PML's tester ran in this hook
            recorder.validated()
        return result

    session.trainer.end_of_epoch_hook = epoch_hook
    try:
        session.run()
    except Enough:
        pass


def growth_row(name: str, recorder: Recorder, args: argparse.Namespace) -> tuple[str, bool]:
    """A table row and whether the run passed."""
    samples = recorder.samples
    start = max(
        1,
        int(args.warmup_frac * len(samples)),
        recorder.third_epoch_start or 0,
        recorder.first_val_end or 0,
    )
    window = max(1, min(args.window, (len(samples) - start) // 2))
    after_warmup = statistics.median(samples[start : start + window])
    at_end = statistics.median(samples[-window:])
    growth = 100 * (at_end - after_warmup) / after_warmup
    passed = growth <= args.tolerance
    mib = 2**20
    row = (
        f'| {name} | {len(samples)} | {samples[0] / mib:.0f} | {after_warmup / mib:.0f} | '
        f'{at_end / mib:.0f} | {max(samples) / mib:.0f} | {growth:+.1f} % | '
        f'{"PASS" if passed else "FAIL"} |'
    )
    return row, passed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--iters', type=int, default=2000, help='training iterations per demo')
    parser.add_argument('--demos', nargs='+', choices=('vse', 'grid', 'pml'), default=None)
    parser.add_argument('--warmup-frac', type=float, default=0.1, help='share of the run')
    parser.add_argument('--window', type=int, default=50, help='iterations per median')
    parser.add_argument('--tolerance', type=float, default=5.0, help='allowed growth, %%')
    parser.add_argument('--grid-image-size', type=int, default=224, help='grid demo: pixels')
    parser.add_argument('--grid-batch', type=int, default=32, help='grid demo: batch size')
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    parser.add_argument(
        '--repeats', type=int, default=None, help='for make bench: scales --iters down (x100)'
    )
    parser.add_argument('--warmup', type=int, default=None, help='accepted for make bench; unused')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--trace', help='write iteration, epoch, RSS (bytes) rows to this CSV')
    args = parser.parse_args()
    if args.repeats is not None:
        args.iters = min(args.iters, 100 * args.repeats)
    args.demos = args.demos or ['vse', 'grid', 'pml']
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ.setdefault('TQDM_DISABLE', '1')  # PML's per-epoch progress bars
    runs: dict[str, Callable] = {
        'vse': lambda rec, wd: run_vse('vse_gpo_demo.py', rec, args, wd),
        'grid': lambda rec, wd: run_vse('vse_gpo_demo_grid.py', rec, args, wd),
        'pml': lambda rec, wd: run_pml(rec, args, wd),
    }
    names = {
        'vse': 'VSE demo (vse_gpo_demo.py, Runner)',
        'grid': f'grid demo (vse_gpo_demo_grid.py, Runner, {args.grid_image_size} px, '
        f'batch {args.grid_batch})',
        'pml': 'PML demo (pml/digits_gsp.py, PML trainer)',
    }
    rows, passed = [], True
    for demo in args.demos:
        recorder = Recorder(args.iters)
        with tempfile.TemporaryDirectory() as work_dir:
            runs[demo](recorder, work_dir)
        row, ok = growth_row(names[demo], recorder, args)
        if args.trace:
            with open(args.trace, 'a') as handle:
                for i, (epoch, rss) in enumerate(
                    zip(recorder.epochs, recorder.samples, strict=True)
                ):
                    handle.write(f'{demo},{i},{epoch},{rss}\n')
        rows.append(row)
        passed &= ok
        print(f'[memory] {row}', flush=True)
    print('\n#### Resident memory over training (RSS, MiB)\n')
    print(f'- machine: {machine(args.device)}; {args.threads} torch thread(s)')
    print(
        f'- {args.iters} iterations per demo; after warm-up = median of {args.window} '
        f'iterations from {100 * args.warmup_frac:.0f} % of the run (at the earliest from the '
        f'third epoch and from the end of the first validation), at the end = median of the last {args.window}; tolerance '
        f'{args.tolerance:.0f} %\n'
    )
    print('| demo | iterations | RSS first | after warm-up | at the end | max | growth | result |')
    print('|---|---|---|---|---|---|---|---|')
    print('\n'.join(rows))
    sys.exit(0 if passed else 1)


if __name__ == '__main__':
    main()
