"""Can GPO learn known pooling strategies? (VSE∞ supplementary experiment.)

Trains one GPO per strategy (average, max, top-10 average, top-50% average, last) to
imitate pooled vectors of random sets with sizes N in 1..36, then prints the RMSE
between learned and true pooling weights on seen sizes, held-out sizes inside the
range, and sizes beyond it, and saves a plot of theta against k for a few N.

    python tools/pooling_patterns.py --out-dir outputs/pooling_patterns
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from gpo_plugin.experiments.pooling_patterns import PATTERNS, fit_pattern, target_weight_table

UNSEEN = (4, 10, 16, 22, 28, 34)
SEEN = tuple(n for n in range(1, 37) if n not in UNSEEN)
BEYOND = tuple(range(37, 49))
TARGET_RMSE = 0.01


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out-dir', default='outputs/pooling_patterns', type=Path)
    parser.add_argument('--steps', type=int, default=1500, help='Adam steps per pattern')
    parser.add_argument('--patterns', nargs='+', default=list(PATTERNS), choices=list(PATTERNS))
    parser.add_argument(
        '--check', action='store_true', help=f'exit 1 unless every seen-size RMSE <= {TARGET_RMSE}'
    )
    return parser.parse_args()


def plot(results, path: Path, sizes=(3, 8, 20, 36)) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.2), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        with torch.no_grad():
            learned = result.gpo.pool_weights(torch.tensor(sizes))
        target = target_weight_table(result.pattern, sizes)
        for row, n in enumerate(sizes):
            (line,) = ax.plot(range(n), learned[row, :n], label=f'N={n}')
            ax.plot(range(n), target[row, :n], '--', color=line.get_color(), alpha=0.6)
        ax.set(title=result.pattern, xlabel='k (sorted position)', ylabel='θ')
    axes[0][0].legend(fontsize=7)
    fig.suptitle('GPO weights (solid) vs true pooling weights (dashed)')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    args = parse_args()
    torch.set_num_threads(1)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    print(
        f'Training GPO on set sizes {SEEN[0]}..{SEEN[-1]} without {UNSEEN}, '
        f'{args.steps} steps per pattern'
    )
    print(
        f'| pattern | RMSE seen | RMSE unseen {UNSEEN} | RMSE beyond (37-48) | seen <= '
        f'{TARGET_RMSE} | time |'
    )
    print('|---|---|---|---|---|---|')
    for pattern in args.patterns:
        start = time.perf_counter()
        result = fit_pattern(pattern, SEEN, UNSEEN, BEYOND, steps=args.steps)
        ok = 'yes' if result.rmse_seen <= TARGET_RMSE else 'NO'
        print(
            f'| {pattern} | {result.rmse_seen:.4f} | {result.rmse_unseen:.4f} | '
            f'{result.rmse_beyond:.4f} | {ok} | {time.perf_counter() - start:.1f}s |',
            flush=True,
        )
        results.append(result)
    figure = args.out_dir / 'gpo_pooling_patterns.png'
    plot(results, figure)
    print(f'plot of theta against k: {figure}')
    failed = [r.pattern for r in results if r.rmse_seen > TARGET_RMSE]
    return 1 if args.check and failed else 0


if __name__ == '__main__':
    sys.exit(main())
