"""Exhaustive k-NN search behind the metric-learning metrics: a chunked torch search, faiss's
``IndexFlatL2`` (PML's default k-NN) and the symmetric leave-one-out search, one entry point
(:func:`knn`) that picks among them (docs/dml.md#metrics)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .symmetric_knn import DEFAULT_BLOCK, GROUP, symmetric_knn

try:
    import faiss
except ImportError:  # optional: the torch path gives the same neighbours
    faiss = None

DEFAULT_MEMORY_BYTES = 256 * 2**20
BACKENDS = ('auto', 'torch', 'faiss', 'symmetric')


def knn(
    query: Tensor,
    k: int,
    reference: Tensor | None = None,
    backend: str = 'auto',
    max_memory_bytes: int = DEFAULT_MEMORY_BYTES,
    with_distances: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Indices (Q, k) of the k nearest references (Euclidean), nearest first.

    With ``reference=None`` the query set is its own reference set and each query's own index
    is excluded. The torch path works on row chunks whose (chunk x R) distance block stays under
    ``max_memory_bytes``; the faiss path (``IndexFlatL2``) bounds its memory itself; the
    symmetric path (leave-one-out only) computes each pair's distance once, in square blocks
    of at most ``max_memory_bytes / 4`` bytes (:func:`symmetric_knn`).

    Args:
        query: (Q, D) float embeddings.
        k: number of neighbours (<= number of available references).
        reference: (R, D) embeddings, or None for leave-one-out within ``query``.
        backend: ``'torch'``, ``'faiss'``, ``'symmetric'`` or ``'auto'``: symmetric for
            leave-one-out on CPU, else faiss when installed and on CPU, else torch.
        with_distances: return ``(distances, indices)``: the float32 squared distances as
            the backend computed them (the torch one omits the constant |q|^2 of each row).
    """
    self_excluded = reference is None
    reference = query if reference is None else reference
    available = reference.shape[0] - int(self_excluded)
    if not 0 < k <= available:
        raise ValueError(f'knn: k = {k} neighbours requested but only {available} references.')
    if backend not in BACKENDS:
        raise ValueError(f'knn: backend must be one of {BACKENDS}, got {backend!r}.')
    if backend == 'auto':
        backend = _auto_backend(query, self_excluded)
    if backend == 'symmetric':
        if not self_excluded:
            raise ValueError(
                "knn: backend='symmetric' needs the query set as its own reference set "
                '(reference=None).'
            )
        found = symmetric_knn(query, k, _symmetric_block(max_memory_bytes), with_distances=True)
    elif backend == 'faiss':
        found = _knn_faiss(query, k, reference, 0 if self_excluded else None)
    else:
        found = _knn_torch(query, k, reference, 0 if self_excluded else None, max_memory_bytes)
    return found if with_distances else found[1]


def _auto_backend(query: Tensor, self_excluded: bool) -> str:
    if query.device.type != 'cpu':
        return 'torch'
    if self_excluded:
        return 'symmetric'
    return 'faiss' if faiss is not None else 'torch'


def _symmetric_block(max_memory_bytes: int) -> int:
    """Block side whose float32 scores use at most a quarter of the budget (the scan's
    temporaries fit in the rest)."""
    return min(DEFAULT_BLOCK, max(GROUP, math.isqrt(max_memory_bytes // 16)))


def _knn_torch(
    query: Tensor, k: int, reference: Tensor, offset: int | None, max_memory_bytes: int
) -> tuple[Tensor, Tensor]:
    """Chunked exhaustive search; with ``offset`` query row i never retrieves reference
    ``offset + i`` (itself)."""
    query, reference = query.float(), reference.float()
    ref_sq = reference.pow(2).sum(1)
    chunk = max(1, max_memory_bytes // (4 * reference.shape[0]))
    values, out = [], []
    for start in range(0, query.shape[0], chunk):
        q = query[start : start + chunk]
        # |q|^2 is constant per row: ranking needs |r|^2 - 2 q.r only.
        dist = torch.addmm(ref_sq[None], q, reference.T, alpha=-2)
        if offset is not None:
            rows = torch.arange(q.shape[0], device=q.device)
            dist[rows, rows + start + offset] = float('inf')
        found = dist.topk(k, dim=1, largest=False, sorted=True)
        values.append(found.values)
        out.append(found.indices)
    return torch.cat(values), torch.cat(out)


def _knn_faiss(
    query: Tensor, k: int, reference: Tensor, offset: int | None
) -> tuple[Tensor, Tensor]:
    if faiss is None:
        raise ImportError("knn: backend='faiss' needs faiss (pip install 'gpo-plugin[faiss]').")
    index = _faiss_index(reference)
    own = None if offset is None else torch.arange(offset, offset + len(query))
    return tuple(x.to(query.device) for x in _faiss_search(index, query, k, own))


def _faiss_index(reference: Tensor):
    index = faiss.IndexFlatL2(reference.shape[1])
    index.add(reference.detach().float().cpu().contiguous().numpy())
    return index


def _faiss_search(index, query: Tensor, k: int, own: Tensor | None) -> tuple[Tensor, Tensor]:
    """``index.search`` for k neighbours (k + 1 when ``own`` gives each row's own reference
    index, which is then dropped, or the last neighbour when it was not retrieved: PML's
    ``return_results``)."""
    points = query.detach().float().cpu().contiguous().numpy()
    distances, found = map(torch.from_numpy, index.search(points, k + int(own is not None)))
    if own is None:
        return distances, found
    is_self = found == own[:, None]
    is_self[~is_self.any(1), -1] = True
    keep = ~is_self
    return distances[keep].reshape(-1, k), found[keep].reshape(-1, k)
