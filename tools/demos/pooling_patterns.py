"""Can GPO learn known pooling strategies? (VSE∞ supplementary experiment.)

Trains one GPO per strategy (average, max, top-10 average, top-50% average, last) to
imitate pooled vectors of random sets with sizes N in 1..36, then prints the RMSE
between learned and true pooling weights on seen sizes, held-out sizes inside the
range, and sizes beyond it, and saves a plot of theta against k for a few N.

    python tools/demos/pooling_patterns.py --out-dir outputs/pooling_patterns
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from gpo_plugin.models.necks import GPO, rank_weights
from gpo_plugin.ops import sort_channels_descending, weighted_sum_sorted
from gpo_plugin.visualization import (
    RankWeightPanel,
    draw_rank_weights,
    rank_weight_curves,
    save_png,
)


def _average(k: Tensor, n: int) -> Tensor:
    return torch.full_like(k, 1.0 / n, dtype=torch.float32)


def _max(k: Tensor, n: int) -> Tensor:
    return (k == 0).float()


def _top_k(top: Callable[[int], int]) -> Callable[[Tensor, int], Tensor]:
    def weights(k: Tensor, n: int) -> Tensor:
        kept = top(n)
        return (k < kept).float() / kept

    return weights


def _last(k: Tensor, n: int) -> Tensor:
    return (k == n - 1).float()


PATTERNS: dict[str, Callable[[Tensor, int], Tensor]] = {
    'average': _average,
    'max': _max,
    'top-10 average': _top_k(lambda n: min(10, n)),
    'top-50% average': _top_k(lambda n: math.ceil(n / 2)),
    'last (min)': _last,
}


def target_weight_table(pattern: str, sizes: Sequence[int]) -> Tensor:
    """(len(sizes), max(sizes)) true weights theta*(k, N), zero past each N."""
    table = torch.zeros(len(sizes), max(sizes))
    for row, n in enumerate(sizes):
        table[row, :n] = PATTERNS[pattern](torch.arange(n), n)
    return table


def weight_rmse(learned: Tensor, target: Tensor, sizes: Sequence[int]) -> float:
    """RMSE over all valid (N, k) pairs, k < N."""
    valid = torch.arange(target.shape[1]).unsqueeze(0) < torch.tensor(sizes).unsqueeze(1)
    return float(((learned - target)[valid] ** 2).mean().sqrt())


def random_sets(batch: int, size: int, dim: int, generator: torch.Generator) -> Tensor:
    """(batch, size, dim) random features whose order statistics identify theta well.

    Each channel is 1 on a random fraction of the set (fraction ~ U(0, 1)) and 0
    elsewhere, plus small Gaussian noise: its pooled value is then close to the
    cumulative weight up to a random rank, so every rank k gets a strong training
    signal. With plain Gaussian features, middle ranks are all near 0 and a pooler that
    cuts at the median (top-50%) is barely identifiable.
    """
    fraction = torch.rand(batch, 1, dim, generator=generator)
    steps = (torch.rand(batch, size, dim, generator=generator) < fraction).float()
    return steps + 0.05 * torch.randn(batch, size, dim, generator=generator)


@dataclass
class PatternResult:
    pattern: str
    gpo: GPO
    rmse_seen: float
    rmse_unseen: float
    rmse_beyond: float


def fit_pattern(
    pattern: str,
    seen: Sequence[int],
    unseen: Sequence[int],
    beyond: Sequence[int],
    *,
    steps: int = 1500,
    batch: int = 128,
    dim: int = 32,
    lr: float = 1e-2,
    seed: int = 0,
) -> PatternResult:
    """Train a fresh GPO on pooled targets of ``pattern`` over sets of ``seen`` sizes."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    gpo = GPO()
    optimizer = torch.optim.Adam(gpo.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    seen_sizes = torch.tensor(seen)
    max_size = max(seen)
    target_table = target_weight_table(pattern, range(1, max_size + 1))
    for _ in range(steps):
        lengths = seen_sizes[torch.randint(len(seen), (batch,), generator=generator)]
        features = random_sets(batch, max_size, dim, generator)
        target = weighted_sum_sorted(
            sort_channels_descending(features, lengths),
            target_table[lengths - 1, : int(lengths.max())],
        )
        loss = torch.nn.functional.mse_loss(gpo.pool(features, lengths).pooled, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    gpo.eval()

    def rmse(sizes: Sequence[int]) -> float:
        with torch.no_grad():
            learned = rank_weights(gpo, sizes)
        return weight_rmse(learned, target_weight_table(pattern, sizes), sizes)

    return PatternResult(pattern, gpo, rmse(seen), rmse(unseen), rmse(beyond))


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
    panels = []
    for result in results:
        target = target_weight_table(result.pattern, sizes).numpy()
        references = [row[:n] for row, n in zip(target, sizes, strict=True)]
        panels.append(
            RankWeightPanel(result.pattern, rank_weight_curves(result.gpo, sizes), references)
        )
    title = 'GPO weights (solid) vs true pooling weights (dashed)'
    save_png(draw_rank_weights(panels, title, dpi=110), str(path))


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
