"""Metric-learning retrieval metrics from a chunked k-NN (docs/dml.md#metrics).

The definitions are those of PML's ``AccuracyCalculator`` (k = the largest class size, queries
whose class has no other reference member -- "lone" queries -- left out), so the values equal
it on the same embeddings; the work is vectorised instead of looping over labels in Python.
Conventional Recall@K (a query counts if any of its K nearest neighbours shares its label) is
averaged over the same queries.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .knn_search import DEFAULT_MEMORY_BYTES
from .ordered_knn import neighbour_chunks


def relevant_counts(query_labels: Tensor, reference_labels: Tensor, self_excluded: bool) -> Tensor:
    """R per query: references sharing its label (its own entry excluded when self_excluded)."""
    classes, counts = torch.unique(reference_labels, return_counts=True)
    position = torch.searchsorted(classes, query_labels).clamp_max(classes.numel() - 1)
    found = classes[position] == query_labels
    return torch.where(found, counts[position], 0) - int(self_excluded)


def per_query_metrics(
    hits: Tensor, relevant: Tensor, num_k: int, names: Sequence[str]
) -> dict[str, Tensor]:
    """Per-query values of PML's k-NN metrics from the hit table, with PML's dtypes.

    Args:
        hits: (Q, n) bool, whether each of the nearest n <= ``num_k`` neighbours shares the
            query's label (columns past n count as misses).
        relevant: (Q,) number R of references sharing each query's label (R >= 1).
        num_k: the k of the search (PML's ``determine_k``): R-Precision and MAP@R look at
            min(R, k) columns, ``mean_average_precision`` / ``mean_reciprocal_rank`` at k.
        names: any of ``precision_at_1``, ``r_precision``, ``mean_average_precision_at_r``,
            ``mean_average_precision``, ``mean_reciprocal_rank``, ``recall_at_{K}``.
    """
    ranks = torch.arange(1, hits.shape[1] + 1, device=hits.device)
    within_r = ranks[None] <= relevant[:, None]
    hits_r = hits & within_r
    r = relevant.double()
    out = {}
    for name in names:
        if name == 'precision_at_1':
            out[name] = hits[:, :1].sum(1).double()
        elif name == 'r_precision':
            out[name] = hits_r.sum(1).double() / relevant.clamp(max=num_k).double()
        elif name == 'mean_average_precision_at_r':
            out[name] = (hits_r.cumsum(1).double() * hits_r / ranks).sum(1) / r
        elif name == 'mean_average_precision':
            out[name] = (hits.cumsum(1).double() * hits / ranks).sum(1) / r
        elif name == 'mean_reciprocal_rank':  # float32, as PML computes it
            first = torch.ones(len(hits), device=hits.device)
            if hits.shape[1]:
                first = hits.int().argmax(1).float() + 1.0
            out[name] = torch.where(hits.any(1), 1.0 / first, 0.0)
        elif name.startswith('recall_at_'):
            out[name] = hits[:, : int(name[len('recall_at_') :])].any(1).double()
        else:
            raise KeyError(f'per_query_metrics: unknown metric {name!r}.')
    return out


def needed_columns(names: Sequence[str], relevant: Tensor, num_k: int) -> Tensor:
    """(Q,) leading neighbour columns whose hit pattern the metrics ``names`` depend on."""
    need = torch.zeros_like(relevant)
    for name in names:
        if name in ('mean_average_precision', 'mean_reciprocal_rank'):
            need = need.clamp(min=num_k)
        elif name in ('r_precision', 'mean_average_precision_at_r'):
            need = torch.maximum(need, relevant)
        elif name == 'precision_at_1':
            need = need.clamp(min=1)
        elif name.startswith('recall_at_'):
            need = need.clamp(min=int(name[len('recall_at_') :]))
    return need.clamp(max=num_k)


def chunked_per_query(
    query: Tensor,
    query_labels: Tensor,
    reference: Tensor,
    reference_labels: Tensor,
    own_prefix: bool,
    names: Sequence[str],
    num_k: int,
    relevant: Tensor,
    backend: str = 'auto',
    max_memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> dict[str, Tensor]:
    """Per-query values (:func:`per_query_metrics`) of every query, from a chunked k-NN in the
    order PML's default k-NN gives (:mod:`.ordered_knn`); only the columns the metrics need
    are searched (at most ``num_k``)."""
    needed = needed_columns(names, relevant, num_k)
    width = int(needed.max()) if needed.numel() else 0

    def hits_of(start: int, index: Tensor) -> Tensor:
        labels = reference_labels[index.clamp(min=0)]
        return (index >= 0) & (labels == query_labels[start : start + len(index), None])

    parts = {name: [] for name in names}
    for start, _, index in neighbour_chunks(
        query, reference, width, own_prefix, hits_of, needed, num_k, backend, max_memory_bytes
    ):
        values = per_query_metrics(
            hits_of(start, index), relevant[start : start + len(index)], num_k, names
        )
        for name in names:
            parts[name].append(values[name])
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


def metrics_from_neighbours(
    neighbour_labels: Tensor,
    query_labels: Tensor,
    relevant: Tensor,
    recall_ks: Sequence[int] = (1, 2, 4, 8),
) -> dict[str, float]:
    """P@1, R-Precision, MAP@R and Recall@K (means over the queries with R >= 1) from the
    labels (Q, k) of the ranked neighbours (k >= max(relevant), >= max(recall_ks))."""
    keep = relevant > 0
    if not bool(keep.any()):
        raise ValueError('metrics: no query has another sample of its class in the reference set.')
    hits = neighbour_labels[keep] == query_labels[keep][:, None]
    names = [*_PML_NAMES, *(f'recall_at_{K}' for K in recall_ks if K <= hits.shape[1])]
    values = per_query_metrics(hits, relevant[keep], hits.shape[1], names)
    return {name: value.mean().item() for name, value in values.items()}


_PML_NAMES = ('precision_at_1', 'r_precision', 'mean_average_precision_at_r')


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

    Returns ``precision_at_1``, ``r_precision``, ``mean_average_precision_at_r`` (PML's
    ``AccuracyCalculator`` with ``k='max_bin_count'``: its values, ties included) and
    ``recall_at_{K}`` for K in ``recall_ks``, all averaged over the queries whose class has
    another member among the references.
    """
    _check_embeddings(embeddings, labels, 'embeddings')
    own_prefix = query is None
    if own_prefix:
        query, query_labels = embeddings, labels
    else:
        _check_embeddings(query, query_labels, 'query')
    labels, query_labels = _exact_labels(labels), _exact_labels(query_labels)
    query, embeddings = query.detach().float(), embeddings.detach().float()
    _check_finite(query, embeddings)
    relevant = relevant_counts(query_labels, labels, own_prefix)
    keep = relevant > 0
    if not bool(keep.any()):
        raise ValueError('metrics: no query has another sample of its class in the reference set.')
    available = embeddings.shape[0] - int(own_prefix)
    # PML's k='max_bin_count': the largest reference count of a query label.
    num_k = max([int(relevant.max()), *recall_ks, 1])
    names = [*_PML_NAMES, *(f'recall_at_{K}' for K in recall_ks if K <= available)]
    values = chunked_per_query(
        query,
        query_labels,
        embeddings,
        labels,
        own_prefix,
        names,
        num_k,
        relevant,
        backend,
        max_memory_bytes,
    )
    return {name: value[keep].mean().item() for name, value in values.items()}


def _exact_labels(labels: Tensor) -> Tensor:
    """Labels compared exactly: integers (and bools) as int64, floating labels as float32."""
    return labels.float() if labels.is_floating_point() else labels.long()


def _check_finite(*embeddings: Tensor) -> None:
    for x in embeddings:
        if x.numel() and not bool(torch.isfinite(x.pow(2).sum(1)).all()):
            raise ValueError(
                'metrics: the embeddings hold inf / NaN (or values whose squares overflow '
                'float32); check the model output or normalise the embeddings.'
            )


def kmeans_clusters(embeddings: Tensor, num_clusters: int, seed: int = 0) -> Tensor:
    """Cluster index (N,) of each embedding from scikit-learn's k-means (one initialisation)."""
    from sklearn.cluster import KMeans

    points = embeddings.detach().float().cpu().numpy()
    clusters = KMeans(num_clusters, n_init=1, random_state=seed).fit_predict(points)
    return torch.from_numpy(clusters).to(embeddings.device)


def clustering_nmi(embeddings: Tensor, labels: Tensor, seed: int = 0) -> float:
    """NMI between the labels and a k-means clustering (k = number of classes)."""
    from sklearn.metrics import normalized_mutual_info_score

    clusters = kmeans_clusters(embeddings, int(torch.unique(labels).numel()), seed)
    return float(normalized_mutual_info_score(labels.cpu().numpy(), clusters.cpu().numpy()))


def _check_embeddings(embeddings: Tensor, labels: Tensor | None, name: str) -> None:
    if not isinstance(embeddings, Tensor) or embeddings.dim() != 2:
        shape = tuple(embeddings.shape) if isinstance(embeddings, Tensor) else type(embeddings)
        raise ValueError(f'metrics: `{name}` must be (N, D) embeddings, got {shape}.')
    if labels is None or labels.shape != embeddings.shape[:1]:
        shape = None if labels is None else tuple(labels.shape)
        raise ValueError(
            f'metrics: labels for `{name}` must be ({embeddings.shape[0]},), got {shape}.'
        )
