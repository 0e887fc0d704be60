"""k-NN in the order PML's default k-NN (faiss ``IndexFlatL2``) returns, ties included
(docs/pml.md#what-is-identical-and-how).

faiss orders equidistant neighbours by its own heap / reservoir bookkeeping, which depends on
k, and its float32 distances round differently from ours. The neighbours are therefore found
with the package's fast search, their distances recomputed in float64, and every query is
checked: when no two of its neighbours whose distances lie within the worst-case float32
rounding of faiss and of our search (a bound, not an estimate) differ in being a hit, any order
faiss could produce gives the same hit table, so ours stands. The other queries (exact ties of
mixed labels, near ties) are searched again with faiss itself, called as PML calls it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from . import knn_search as search

_UNIT = 2.0**-24 * 1.01  # float32 unit roundoff, with room for the (1 - n u) denominators


def neighbour_chunks(
    query: Tensor,
    reference: Tensor,
    k: int,
    own_prefix: bool,
    hits_of,
    needed: Tensor,
    faiss_k: int,
    backend: str = 'auto',
    max_memory_bytes: int = search.DEFAULT_MEMORY_BYTES,
) -> Iterator[tuple[int, int, Tensor]]:
    """Yield ``(start, stop, indices)`` over query chunks: ``indices`` (c, k) are the k nearest
    references of queries ``start:stop`` in faiss's order (-1 where fewer than k exist).

    Args:
        query, reference: (Q, D), (R, D) finite float32 embeddings.
        k: neighbours per query.
        own_prefix: query i is reference i (PML's ``ref_includes_query``); it is not its own
            neighbour.
        hits_of: ``(start, indices) -> (c, n) bool``, whether each neighbour is a hit.
        needed: (Q,) leading columns whose hit pattern matters for each query (<= k).
        faiss_k: the k of the faiss search being matched (PML's ``num_k``): its tie order
            depends on it.
    """
    available = reference.shape[0] - int(own_prefix)
    k_eff = min(k, available)
    if k_eff <= 0:
        for start, stop in _ranges(query.shape[0], 1 << 30):
            yield start, stop, torch.full((stop - start, k), -1, dtype=torch.long)
        return
    width = min(k_eff + 1, available)  # one more: is the k-th clearly ahead of the rest?
    whole = own_prefix and query.shape[0] == reference.shape[0]
    device = query.device
    if backend == 'symmetric' and not whole:
        backend = 'auto'
    if query.device.type == 'cuda' and torch.get_float32_matmul_precision() != 'highest':
        # TF32 / bf16 products break the float32 error bound of the tie check.
        backend = 'faiss' if search.faiss is not None else 'torch'
        query, reference = query.cpu(), reference.cpu()
    everything = None
    if whole:
        everything = search.knn(query, width, None, backend, max_memory_bytes, with_distances=True)
    checker = _OrderCheck(query, reference, faiss_k, own_prefix)
    chunk = max(1, max_memory_bytes // (16 * (width + 1)))
    for start, stop in _ranges(query.shape[0], chunk):
        if everything is not None:
            found = tuple(x[start:stop] for x in everything)
        else:
            found = _search(
                query[start:stop], width, reference, own_prefix, start, backend, max_memory_bytes
            )
        found = checker.fix(
            start, found, hits_of, needed[start:stop].clamp(0, k_eff), width < available
        )[:, :k_eff]
        if k_eff < k:
            found = torch.cat([found, found.new_full((found.shape[0], k - k_eff), -1)], 1)
        yield start, stop, found.to(device)


def _ranges(total: int, chunk: int) -> list[tuple[int, int]]:
    return [(s, min(s + chunk, total)) for s in range(0, total, chunk)]


def _search(query, width, reference, own_prefix, start, backend, max_memory_bytes):
    offset = start if own_prefix else None
    if backend == 'auto':
        backend = 'faiss' if search.faiss is not None and query.device.type == 'cpu' else 'torch'
    if backend == 'faiss':
        return search._knn_faiss(query, width, reference, offset)
    return search._knn_torch(query, width, reference, offset, max_memory_bytes)


class _OrderCheck:
    """Sorts candidate neighbours by exact distance and re-searches, with faiss as PML calls
    it, the queries whose hit pattern could depend on rounding or tie order."""

    def __init__(self, query: Tensor, reference: Tensor, faiss_k: int, own_prefix: bool):
        self.query, self.reference = query, reference
        self.faiss_k, self.own_prefix = faiss_k, own_prefix
        self.dim = query.shape[1]
        self.max_norm = float(reference.double().norm(dim=1).max()) if len(reference) else 0.0
        self.index = None
        self.rechecked = 0

    def fix(self, start: int, searched, hits_of, needed: Tensor, unseen: bool) -> Tensor:
        """``searched``: (distances, indices) of our search, nearest first, each distance
        within the error bound of its exact value (the order may differ from the exact one
        only inside a tie group, so the groups found from them are the exact ones)."""
        distances, found = searched
        query = self.query[start : start + found.shape[0]].double()
        unsafe = self._unsafe(query, distances.double(), hits_of(start, found), needed, unseen)
        if search.faiss is not None and bool(unsafe.any()):
            rows = unsafe.nonzero().reshape(-1)
            found = found.clone()
            found[rows] = self._faiss_rows(rows + start, found.shape[1])
            self.rechecked += int(rows.numel())
        return found

    def _unsafe(self, query, distances, hits, needed, unseen) -> Tensor:
        # Worst-case error of one float32 squared distance, faiss's (norms + product, or
        # direct differences: (d + 3) u s^2) and ours (augmented product, or |r|^2 - 2 q.r:
        # (2d + 3) u s^2), s = |q| + max |r|: two of each bound a gap's error.
        scale = (query.norm(dim=1) + self.max_norm).pow(2)
        tolerance = 2 * (3 * self.dim + 6) * _UNIT * scale
        tied = (distances[:, 1:] - distances[:, :-1]) <= tolerance[:, None]
        # Tie groups: runs of neighbours joined by gaps within the tolerance. faiss may order
        # each group any way, never across groups. A group reaching into the needed columns
        # that mixes hits and misses can change the needed hit pattern.
        group = torch.cat([tied.new_zeros(len(tied), 1), ~tied], 1).long().cumsum(1)
        size = torch.zeros_like(group).scatter_add_(1, group, torch.ones_like(group))
        found = torch.zeros_like(group).scatter_add_(1, group, hits.long())
        mixed = ((found > 0) & (found < size)).gather(1, group)
        last = group.gather(1, (needed - 1).clamp(min=0)[:, None])
        unsafe = (mixed & (group <= last)).any(1) & (needed > 0)
        if unseen:
            # The group of the last needed column may go on past the last candidate.
            unsafe |= (last[:, 0] == group[:, -1]) & (needed > 0)
        return unsafe

    def _faiss_rows(self, rows: Tensor, width: int) -> Tensor:
        """Rows' neighbours from faiss with PML's k, in batches that take the same faiss code
        path as PML's single call with all queries (padded with repeats where needed)."""
        if self.index is None:
            self.index = search._faiss_index(self.reference)
        count = rows.numel()
        least, most = faiss_batch_bounds(self.query.shape[0], self.dim, self.reference.shape[0])
        batch = min(most, max(least, search.DEFAULT_MEMORY_BYTES // (16 * (self.faiss_k + 2))))
        out = []
        for start in range(0, count, batch):
            part = rows[start : start + batch]
            size = part.numel()
            if size < least:
                part = torch.cat([part, part[:1].repeat(least - size)])
            own = part.cpu() if self.own_prefix else None
            out.append(
                search._faiss_search(self.index, self.query[part], self.faiss_k, own)[1][:size]
            )
        found = torch.cat(out)[:, :width]
        if found.shape[1] < width:
            found = torch.cat([found, found.new_full((count, width - found.shape[1]), -1)], 1)
        return found.to(self.query.device)


def faiss_batch_bounds(num_queries: int, dim: int, num_references: int) -> tuple[int, int]:
    """(least, most) rows of a flat-L2 faiss search that takes the code path a search with
    ``num_queries`` rows takes. faiss picks a database-parallel search (fewer queries than
    threads, large database), direct differences (rows x dim below its BLAS threshold) or norms
    and a matrix product; each has its own roundings and tie order, which are per query."""
    threads = search.faiss.omp_get_max_threads()
    threshold = int(search.faiss.cvar.distance_compute_blas_threshold)
    big = num_references >= max(
        10000, threads * int(search.faiss.cvar.distance_compute_blas_database_bs)
    )
    if threads > 1 and big and num_queries < threads:
        return 1, num_queries  # database-parallel
    not_parallel = threads if threads > 1 and big else 1
    blas_rows = -(-threshold // dim)
    if num_queries < blas_rows:  # direct differences
        return min(not_parallel, num_queries), max(not_parallel, blas_rows - 1)
    return max(not_parallel, blas_rows), 1 << 62
