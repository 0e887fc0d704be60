"""VSE∞ supplement experiment: can GPO learn known pooling strategies?

Sets of random features of size N are pooled by a known strategy, i.e. a weighted sum
of per-channel order statistics with known weights theta*(k, N); GPO is trained to
reproduce the pooled vectors and its learned theta is compared with theta*.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from gpo_plugin.models.necks import GPO
from gpo_plugin.models.utils import sort_channels_descending, weighted_sum_sorted


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
        loss = torch.nn.functional.mse_loss(gpo.pool(features, lengths)[0], target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    gpo.eval()

    def rmse(sizes: Sequence[int]) -> float:
        with torch.no_grad():
            learned = gpo.pool_weights(torch.tensor(sizes))
        return weight_rmse(learned, target_weight_table(pattern, sizes), sizes)

    return PatternResult(pattern, gpo, rmse(seen), rmse(unseen), rmse(beyond))
