"""PML's AccuracyCalculator on the package's chunked k-NN: same arguments, names and values."""

from __future__ import annotations

import torch
from pytorch_metric_learning.utils import accuracy_calculator as pml_acc
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from torch import Tensor

from gpo_plugin.evaluation.functional import knn_metrics
from gpo_plugin.evaluation.functional.knn_metrics import DEFAULT_MEMORY_BYTES, knn, relevant_counts

# Metrics that need no more neighbours than the largest class (R of every query).
_WITHIN_R = ('precision_at_1', 'r_precision', 'mean_average_precision_at_r')
_RANKED = ('mean_average_precision', 'mean_reciprocal_rank')


class KNNAccuracyCalculator(AccuracyCalculator):
    """Drop-in for PML's ``AccuracyCalculator`` (same constructor, metric names and values,
    ``avg_of_avgs`` / ``return_per_class`` included) whose k-NN is the package's chunked one
    (faiss when installed, torch otherwise) and whose metrics are computed on query chunks,
    so memory stays bounded: only as many neighbours as the largest class are searched for
    P@1, R-Precision and MAP@R whatever ``k`` is, and the full ``k`` (PML's ``determine_k``)
    only for ``mean_average_precision`` / ``mean_reciprocal_rank``.

    Use it as ``testers.GlobalEmbeddingSpaceTester(accuracy_calculator=KNNAccuracyCalculator())``.
    A custom ``knn_func`` or ``label_comparison_fn`` falls back to PML's own computation.

    Args (besides PML's):
        backend: ``'auto'``, ``'symmetric'``, ``'faiss'`` or ``'torch'``, as for
            :func:`gpo_plugin.evaluation.functional.knn`: when the queries are the reference
            set, ``'auto'`` on CPU computes each pair's distance once (``'symmetric'``).
        max_memory_bytes: budget of one query chunk's distance block / neighbour table.
    """

    def __init__(
        self,
        *args,
        backend: str = 'auto',
        max_memory_bytes: int = DEFAULT_MEMORY_BYTES,
        **kwargs,
    ) -> None:
        self._custom_knn = kwargs.get('knn_func') is not None
        if kwargs.get('kmeans_func') is None and knn_metrics.faiss is None:
            kwargs['kmeans_func'] = SklearnKMeans()
        super().__init__(*args, **kwargs)
        if backend not in knn_metrics.BACKENDS:
            raise ValueError(
                f'KNNAccuracyCalculator: backend must be one of {knn_metrics.BACKENDS}, '
                f'got {backend!r}.'
            )
        self.backend = backend
        self.max_memory_bytes = max_memory_bytes

    def get_accuracy(
        self,
        query,
        query_labels,
        reference=None,
        reference_labels=None,
        ref_includes_query=False,
        include=(),
        exclude=(),
    ):
        knn_metrics_wanted = set(self.get_function_dict(include, exclude)) & set(
            self.requires_knn() + list(_RANKED)
        )
        if self._custom_knn or self.label_comparison_fn is not pml_acc.EQUALITY:
            return super().get_accuracy(
                query,
                query_labels,
                reference,
                reference_labels,
                ref_includes_query,
                include,
                exclude,
            )
        if reference is None:
            reference, reference_labels, ref_includes_query = query, query_labels, True
        query, reference = (_as_tensor(x, self.device).float() for x in (query, reference))
        query_labels, reference_labels = (
            _as_tensor(x, self.device).reshape(-1) for x in (query_labels, reference_labels)
        )
        if len(query) != len(query_labels) or len(reference) != len(reference_labels):
            raise ValueError(
                'KNNAccuracyCalculator: embeddings and labels must have the same length, got '
                f'{len(query)} / {len(query_labels)} queries and {len(reference)} / '
                f'{len(reference_labels)} references.'
            )
        if ref_includes_query and not (
            torch.allclose(query, reference[: len(query)])
            and torch.equal(query_labels, reference_labels[: len(query)])
        ):
            raise ValueError(
                'KNNAccuracyCalculator: with ref_includes_query=True the first len(query) '
                'references (and labels) must be the queries.'
            )
        self.curr_function_dict = self.get_function_dict(include, exclude)
        results = {}
        if knn_metrics_wanted:
            results.update(
                self._knn_metrics(
                    query, query_labels, reference, reference_labels, ref_includes_query
                )
            )
        clustering = [m for m in self.curr_function_dict if m in self.requires_clustering()]
        if clustering:
            cluster_labels = self.get_cluster_labels(query, query_labels.float())
            for name in clustering:
                results[name] = self.curr_function_dict[name](
                    query_labels=query_labels.float(), cluster_labels=cluster_labels
                )
        return {name: results[name] for name in self.curr_function_dict}

    # -- k-NN metrics -----------------------------------------------------------------------

    def _knn_metrics(self, query, query_labels, reference, reference_labels, self_included):
        wanted = [m for m in self.curr_function_dict if m in _WITHIN_R + _RANKED]
        relevant = relevant_counts(query_labels, reference_labels, self_included)
        not_lone = relevant > 0
        _, counts = torch.unique(reference_labels, return_counts=True)
        num_k = self.determine_k(counts, len(reference), self_included)
        if any(m in _RANKED for m in wanted):
            k = num_k
        else:  # P@1, R-Precision and MAP@R never look past R (or past k when k < R)
            k = min(num_k, max(int(relevant.max()), 1))
        k = min(k, len(reference) - int(self_included))
        per_query = {m: [] for m in wanted}
        chunk = max(1, self.max_memory_bytes // (8 * 4 * max(k, 1)))
        # Queries = references: one leave-one-out search over the whole set (each pair's
        # distance once with the symmetric backend); (N, k) indices are small.
        whole = self_included and len(query) == len(reference)
        if whole:
            neighbours = knn(query, k, None, self.backend, self.max_memory_bytes)
        for start in range(0, len(query), chunk):
            stop = min(start + chunk, len(query))
            if whole:
                index = neighbours[start:stop]
            else:
                index = self._neighbours(query[start:stop], k, reference, self_included, start)
            hits = reference_labels[index] == query_labels[start:stop, None]
            for name, values in _per_query(hits, relevant[start:stop], wanted).items():
                per_query[name].append(values)
        labels = query_labels[not_lone][:, None].float()
        out = {}
        for name, chunks in per_query.items():
            values = torch.cat(chunks)[not_lone]
            if values.numel() == 0:
                out[name] = pml_acc.nan_accuracy(torch.unique(query_labels), self.return_per_class)
            else:
                out[name] = pml_acc.maybe_get_avg_of_avgs(
                    values, labels, self.avg_of_avgs, self.return_per_class
                )
        return out

    def _neighbours(self, query, k, reference, self_included, offset) -> Tensor:
        """(q, k) reference indices, nearest first; with ``self_included`` the query's own
        index (offset + row) is dropped, or the last of k + 1 neighbours when it is not among
        them (ties), exactly as PML's k-NN does."""
        if not self_included:
            return knn(query, k, reference, self.backend, self.max_memory_bytes)
        found = knn(query, k + 1, reference, self.backend, self.max_memory_bytes)
        own = torch.arange(offset, offset + len(query), device=found.device)[:, None]
        is_self = found == own
        is_self[~is_self.any(1), -1] = True
        return found[~is_self].reshape(len(query), k)


def _per_query(hits: Tensor, relevant: Tensor, wanted: list[str]) -> dict[str, Tensor]:
    """Per-query values with PML's definitions, from the (q, k) hit table (nearest first) and
    the number R of relevant references of each query (columns beyond k do not count)."""
    ranks = torch.arange(1, hits.shape[1] + 1, device=hits.device)
    within_r = ranks[None] <= relevant[:, None]
    hits_r = hits & within_r
    r = relevant.double()
    out = {}
    if 'precision_at_1' in wanted:
        out['precision_at_1'] = hits[:, 0].double()
    if 'r_precision' in wanted:
        out['r_precision'] = hits_r.sum(1) / within_r.sum(1).double()
    if 'mean_average_precision_at_r' in wanted:
        out['mean_average_precision_at_r'] = (hits_r.cumsum(1).double() * hits_r / ranks).sum(1) / r
    if 'mean_average_precision' in wanted:
        out['mean_average_precision'] = (hits.cumsum(1).double() * hits / ranks).sum(1) / r
    if 'mean_reciprocal_rank' in wanted:
        first = torch.where(hits.any(1), hits.double().argmax(1) + 1.0, torch.inf)
        out['mean_reciprocal_rank'] = 1.0 / first
    return out


def _as_tensor(x, device) -> Tensor:
    return (torch.as_tensor(x) if not isinstance(x, Tensor) else x).to(device)


class SklearnKMeans:
    """k-means for NMI / AMI when faiss is not installed (PML's default needs faiss)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def __call__(self, x: Tensor, num_clusters: int) -> Tensor:
        from sklearn.cluster import KMeans

        points = x.detach().float().cpu().numpy()
        clusters = KMeans(num_clusters, n_init=1, random_state=self.seed).fit_predict(points)
        return torch.from_numpy(clusters).to(x.device)
