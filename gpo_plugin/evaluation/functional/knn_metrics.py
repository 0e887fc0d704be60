"""Metric-learning retrieval metrics from a chunked k-NN (docs/dml.md#metrics).

The definitions are those of PML's ``AccuracyCalculator`` (k = the largest class size, queries
whose class has no other reference member -- "lone" queries -- left out), so the values equal
it on the same embeddings; the work is vectorised instead of looping over labels in Python.
Conventional Recall@K (a query counts if any of its K nearest neighbours shares its label) is
averaged over the same queries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
) -> Tensor:
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
        return symmetric_knn(query, k, block=_symmetric_block(max_memory_bytes))
    if backend == 'faiss':
        return _knn_faiss(query, k, reference, self_excluded)
    return _knn_torch(query, k, reference, self_excluded, max_memory_bytes)


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
    query: Tensor, k: int, reference: Tensor, self_excluded: bool, max_memory_bytes: int
) -> Tensor:
    query, reference = query.float(), reference.float()
    ref_sq = reference.pow(2).sum(1)
    chunk = max(1, max_memory_bytes // (4 * reference.shape[0]))
    out = []
    for start in range(0, query.shape[0], chunk):
        q = query[start : start + chunk]
        # |q|^2 is constant per row: ranking needs |r|^2 - 2 q.r only.
        dist = torch.addmm(ref_sq[None], q, reference.T, alpha=-2)
        if self_excluded:
            rows = torch.arange(q.shape[0], device=q.device)
            dist[rows, rows + start] = float('inf')
        out.append(dist.topk(k, dim=1, largest=False, sorted=True).indices)
    return torch.cat(out)


def _knn_faiss(query: Tensor, k: int, reference: Tensor, self_excluded: bool) -> Tensor:
    if faiss is None:
        raise ImportError("knn: backend='faiss' needs faiss (pip install 'gpo-plugin[faiss]').")
    index = faiss.IndexFlatL2(reference.shape[1])
    index.add(reference.detach().float().cpu().contiguous().numpy())
    _, found = index.search(query.detach().float().cpu().contiguous().numpy(), k + self_excluded)
    found = torch.from_numpy(found).to(query.device)
    if not self_excluded:
        return found
    # Drop each row's own index (or, if it was not retrieved, the last neighbour).
    is_self = found == torch.arange(found.shape[0], device=found.device)[:, None]
    is_self[~is_self.any(1), -1] = True
    return found[~is_self].reshape(found.shape[0], k)


def relevant_counts(query_labels: Tensor, reference_labels: Tensor, self_excluded: bool) -> Tensor:
    """R per query: references sharing its label (its own entry excluded when self_excluded)."""
    classes, counts = torch.unique(reference_labels, return_counts=True)
    position = torch.searchsorted(classes, query_labels).clamp_max(classes.numel() - 1)
    found = classes[position] == query_labels
    return torch.where(found, counts[position], 0) - int(self_excluded)


def metrics_from_neighbours(
    neighbour_labels: Tensor,
    query_labels: Tensor,
    relevant: Tensor,
    recall_ks: Sequence[int] = (1, 2, 4, 8),
) -> dict[str, float]:
    """P@1, R-Precision, MAP@R and Recall@K from the labels of the ranked neighbours.

    Args:
        neighbour_labels: (Q, k) labels of each query's neighbours, nearest first, with
            k >= max(relevant) (and >= max(recall_ks) for the recalls).
        query_labels: (Q,) labels.
        relevant: (Q,) number R of references sharing the query's label; queries with R = 0
            are left out of every metric.
    """
    keep = relevant > 0
    if not bool(keep.any()):
        raise ValueError('metrics: no query has another sample of its class in the reference set.')
    labels, r = query_labels[keep], relevant[keep]
    hits = neighbour_labels[keep] == labels[:, None]  # (Q', k)
    ranks = torch.arange(1, hits.shape[1] + 1, device=hits.device)
    within_r = ranks[None] <= r[:, None]
    hits_r = hits & within_r
    r64 = r.double()
    cumulative = hits_r.cumsum(1).double()
    metrics = {
        'precision_at_1': hits[:, 0].double().mean().item(),
        'r_precision': (hits_r.sum(1) / r64).mean().item(),
        'mean_average_precision_at_r': ((cumulative / ranks * hits_r).sum(1) / r64).mean().item(),
    }
    for K in recall_ks:
        if K <= hits.shape[1]:
            metrics[f'recall_at_{K}'] = hits[:, :K].any(1).double().mean().item()
    return metrics


def retrieval_metrics(
    embeddings: Tensor,
    labels: Tensor,
    recall_ks: Sequence[int] = (1, 2, 4, 8),
    query: Tensor | None = None,
    query_labels: Tensor | None = None,
    backend: str = 'auto',
    max_memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> dict[str, float]:
    """Leave-one-out retrieval metrics of ``embeddings`` (N, D) with ``labels`` (N,), or of
    separate ``query`` embeddings against ``embeddings`` as the reference set.

    Returns a dict with ``precision_at_1``, ``r_precision``, ``mean_average_precision_at_r``
    (all as PML's ``AccuracyCalculator``) and ``recall_at_{K}`` for K in ``recall_ks``.
    """
    _check_embeddings(embeddings, labels, 'embeddings')
    self_excluded = query is None
    if self_excluded:
        query, query_labels = embeddings, labels
    else:
        _check_embeddings(query, query_labels, 'query')
    labels, query_labels = labels.long(), query_labels.long()
    relevant = relevant_counts(query_labels, labels, self_excluded)
    available = embeddings.shape[0] - int(self_excluded)
    k = min(max([int(relevant.max()), *recall_ks, 1]), available)
    index = knn(query, k, None if self_excluded else embeddings, backend, max_memory_bytes)
    return metrics_from_neighbours(labels[index], query_labels, relevant, recall_ks)


def clustering_nmi(embeddings: Tensor, labels: Tensor, seed: int = 0) -> float:
    """NMI between the labels and a k-means clustering (k = number of classes)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    num_classes = int(torch.unique(labels).numel())
    points = embeddings.detach().float().cpu().numpy()
    clusters = KMeans(num_classes, n_init=1, random_state=seed).fit_predict(points)
    return float(normalized_mutual_info_score(labels.cpu().numpy(), clusters))


def _check_embeddings(embeddings: Tensor, labels: Tensor | None, name: str) -> None:
    if not isinstance(embeddings, Tensor) or embeddings.dim() != 2:
        shape = tuple(embeddings.shape) if isinstance(embeddings, Tensor) else type(embeddings)
        raise ValueError(f'metrics: `{name}` must be (N, D) embeddings, got {shape}.')
    if labels is None or labels.shape != embeddings.shape[:1]:
        shape = None if labels is None else tuple(labels.shape)
        raise ValueError(
            f'metrics: labels for `{name}` must be ({embeddings.shape[0]},), got {shape}.'
        )
