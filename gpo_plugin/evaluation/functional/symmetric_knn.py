"""Leave-one-out k-NN of a set against itself, each pair's distance computed once
(docs/benchmarks.md#dml-metrics-benchmarksbenchmark_metricspy).

When the queries are the reference set, the distance matrix is symmetric: this k-NN computes
the upper triangle of it in square blocks and keeps every block's scores for both its rows and
its columns. Each block is scanned cheaply against the running k-th-best distance of its rows
and columns (minimum over groups of 32 scores of a row, or 16 of a column, first, so only
groups that can improve a list are looked at), and the few candidates are merged into the
lists. Memory stays at a few blocks; the neighbours are those of an exhaustive search (up to
the order of exact ties).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

GROUP = 32  # scores per group of a row scan (consecutive in memory); blocks are multiples of it
# Scores per group of a column scan. A column's scores lie one block row apart, so every
# score gathered from a passing group is its own cache line: smaller groups gather less
# for about as many passing groups (16 measured fastest of 8 / 16 / 32 at SOP size).
COLUMN_GROUP = 16
DEFAULT_BLOCK = 2048  # measured fastest of 1024 / 1536 / 2048 / 4096 at SOP size on CPU


def symmetric_knn(
    embeddings: Tensor, k: int, block: int = DEFAULT_BLOCK, with_distances: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """Indices (N, k) of each row's k nearest other rows (Euclidean), nearest first.

    Args:
        embeddings: (N, D) float embeddings, N > k.
        k: neighbours per row.
        block: rows per square block (rounded up to a multiple of 32); a block holds
            ``block**2`` float32 scores.
        with_distances: also return the (N, k) float32 squared distances, as computed.
    """
    num = embeddings.shape[0]
    if not 0 < k < num:
        raise ValueError(f'symmetric_knn: k = {k} neighbours requested but only {num - 1} others.')
    block = max(GROUP, -(-block // GROUP) * GROUP)
    left, right = _augmented_factors(embeddings.detach().float())
    total = left.shape[0]
    best = _NeighbourLists(total, k, left.device)
    starts = range(0, total, block)
    # Diagonal blocks first: every list then holds the best of `block` rows, and the scan of
    # the other blocks looks only at scores below each list's k-th distance.
    for start in starts:
        rows = slice(start, min(start + block, total))
        distances = left[rows] @ right[rows].t()
        distances.fill_diagonal_(math.inf)
        best.initialise(rows, distances)
    for i, row_start in enumerate(starts):
        rows = slice(row_start, min(row_start + block, total))
        for col_start in starts[i + 1 :]:
            cols = slice(col_start, min(col_start + block, total))
            distances = left[rows] @ right[cols].t()
            for_rows = _row_candidates(distances, best.threshold(rows), rows, cols)
            for_cols = _row_candidates(distances.t(), best.threshold(cols), cols, rows)
            # Rows and columns are disjoint sets of lists: one merge serves both.
            best.merge(*(torch.cat(pair) for pair in zip(for_rows, for_cols, strict=True)))
    if with_distances:
        return best.distances[:num], best.indices[:num]
    return best.indices[:num]


def _augmented_factors(x: Tensor) -> tuple[Tensor, Tensor]:
    """(left, right) with ``left @ right.T`` = squared distances, padded to a multiple of 32
    rows whose distance to everything is +inf (so they are never anyone's neighbour)."""
    padding = -x.shape[0] % GROUP
    x = torch.cat([x, x.new_zeros(padding, x.shape[1])])
    squares = x.pow(2).sum(1, keepdim=True)
    squares[squares.shape[0] - padding :] = math.inf
    ones = torch.ones_like(squares)
    # |a|^2 + |b|^2 - 2 a.b in one product: [-2a, |a|^2, 1] . [b, 1, |b|^2].
    return torch.cat([-2 * x, squares, ones], 1), torch.cat([x, ones, squares], 1)


def _row_candidates(
    distances: Tensor, thresholds: Tensor, rows: slice, cols: slice
) -> tuple[Tensor, Tensor, Tensor]:
    """(row, score, column) of the scores of ``distances`` (R, C) below their row's threshold,
    in global indices (``rows`` / ``cols`` place the block). ``distances`` is a contiguous
    block or its transpose."""
    num_rows, num_cols = distances.shape
    if distances.stride(1) == 1:  # groups of 32 consecutive columns: gather whole groups
        size, groups = GROUP, num_cols // GROUP
        group_min = distances.view(num_rows, groups, size).amin(-1)
        row, group = (group_min < thresholds[:, None]).nonzero(as_tuple=True)
        values = distances.view(-1, size).index_select(0, row * groups + group)  # (P, 32)
    else:  # a transposed block: its groups are 16 consecutive rows of the memory
        size = COLUMN_GROUP
        grouped = distances.t().view(num_cols // size, size, num_rows)
        group_min = grouped.amin(1).t()  # reduce across rows: contiguous, vectorised
        row, group = (group_min < thresholds[:, None]).nonzero(as_tuple=True)
        values = grouped.permute(2, 0, 1)[row, group]  # (P, 16)
    which, offset = (values < thresholds[row, None]).nonzero(as_tuple=True)
    row, column = row[which], group[which] * size + offset
    return row + rows.start, values[which, offset], column + cols.start


class _NeighbourLists:
    """Running (N, k) lists of the nearest distances and their indices, sorted per row."""

    def __init__(self, num: int, k: int, device: torch.device) -> None:
        self.k = k
        self.distances = torch.full((num, k), math.inf, device=device)
        self.indices = torch.full((num, k), -1, dtype=torch.long, device=device)

    def threshold(self, rows: slice) -> Tensor:
        """The current k-th distance of each row: only smaller scores change its list."""
        return self.distances[rows, -1]

    def initialise(self, rows: slice, distances: Tensor) -> None:
        """Fill the (empty) lists of ``rows`` from their diagonal block (self set to +inf)."""
        groups = distances.shape[1] // GROUP
        if self.k > groups:  # small blocks: a full top-k
            kept = min(self.k, distances.shape[1])
            values, columns = distances.topk(kept, dim=1, largest=False, sorted=True)
            self.distances[rows, :kept] = values
            self.indices[rows, :kept] = columns + rows.start
            return
        # The k-th smallest of the groups' minima bounds the k-th distance from above (k
        # groups hold a score at most that large): only scores up to it can be in the list.
        group_min = distances.view(distances.shape[0], groups, GROUP).amin(-1)
        bound = group_min.topk(self.k, dim=1, largest=False, sorted=True).values[:, -1]
        bound = torch.nextafter(bound, torch.full_like(bound, math.inf))  # `<` keeps ties
        self.merge(*_row_candidates(distances, bound, rows, rows))

    def merge(self, rows: Tensor, distances: Tensor, indices: Tensor) -> None:
        """Fold candidate (row, distance, index) triples into the lists."""
        if rows.numel() == 0:
            return
        order = torch.argsort(rows, stable=True)
        rows, distances, indices = rows[order], distances[order], indices[order]
        touched, counts = torch.unique_consecutive(rows, return_counts=True)
        slot = torch.repeat_interleave(torch.arange(touched.numel(), device=rows.device), counts)
        firsts = torch.cumsum(counts, 0) - counts
        position = torch.arange(rows.numel(), device=rows.device) - firsts[slot]
        width = int(counts.max())
        new_distances = distances.new_full((touched.numel(), width), math.inf)
        new_indices = indices.new_full((touched.numel(), width), -1)
        new_distances[slot, position] = distances
        new_indices[slot, position] = indices
        all_distances = torch.cat([self.distances[touched], new_distances], 1)
        all_indices = torch.cat([self.indices[touched], new_indices], 1)
        values, chosen = all_distances.topk(self.k, dim=1, largest=False, sorted=True)
        self.distances[touched] = values
        self.indices[touched] = all_indices.gather(1, chosen)
