"""PML's AccuracyCalculator with the package's chunked k-NN: same arguments, keys, values,
warnings and errors (docs/pml.md#what-is-identical-and-how)."""

from __future__ import annotations

import torch
from pytorch_metric_learning.utils import accuracy_calculator as pml_acc
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import FaissKNN
from torch import Tensor

from gpo_plugin.evaluation.functional import knn_search
from gpo_plugin.evaluation.functional.knn_metrics import (
    DEFAULT_MEMORY_BYTES,
    chunked_per_query,
    kmeans_clusters,
    relevant_counts,
)

# PML's k-NN metrics that per_query_metrics computes as the same function.
_VECTORISED = (
    'precision_at_1',
    'r_precision',
    'mean_average_precision_at_r',
    'mean_average_precision',
    'mean_reciprocal_rank',
)
_FLOAT32_EXACT = 2**24  # integers below this survive PML's cast of labels to float32


class KNNAccuracyCalculator(AccuracyCalculator):
    """Drop-in for PML's ``AccuracyCalculator``: the same constructor, keys, values, warnings
    and errors (subclasses' own ``calculate_*`` metrics included), with the k-NN computed in
    query chunks of bounded memory by the package's search (symmetric leave-one-out on CPU,
    faiss or torch otherwise) and returned in the order PML's faiss k-NN gives, ties included.

    PML's own code runs the metrics (its ``_get_accuracy`` on its function dict), except PML's
    unmodified k-NN metrics, which :func:`~gpo_plugin.evaluation.functional.knn_metrics.
    per_query_metrics` computes without materialising the (Q, k) neighbour table. A custom
    ``knn_func`` or ``label_comparison_fn`` runs PML's computation unchanged. Two answers
    differ from PML's on purpose, where PML is wrong: a k beyond the number of references
    counts the missing neighbours as misses (PML reads label[-1]), and integer labels are not
    merged by a float32 cast (PML merges labels >= 2**24).

    Use it as ``testers.GlobalEmbeddingSpaceTester(accuracy_calculator=KNNAccuracyCalculator())``.

    Args (besides PML's):
        backend: ``'auto'``, ``'symmetric'``, ``'faiss'`` or ``'torch'``, as for
            :func:`gpo_plugin.evaluation.functional.knn`.
        max_memory_bytes: budget of one query chunk's distance block / neighbour table.
    """

    def __init__(
        self,
        *args,
        backend: str = 'auto',
        max_memory_bytes: int = DEFAULT_MEMORY_BYTES,
        **kwargs,
    ) -> None:
        if kwargs.get('kmeans_func') is None and knn_search.faiss is None:
            kwargs['kmeans_func'] = SklearnKMeans()
        super().__init__(*args, **kwargs)
        if backend not in knn_search.BACKENDS:
            raise ValueError(
                f'KNNAccuracyCalculator: backend must be one of {knn_search.BACKENDS}, '
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
        if not self._default_knn() or _labels_not_1d(query_labels, reference_labels):
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
        query, reference = (
            c_f.numpy_to_torch(x).to(self.device).type(torch.float) for x in (query, reference)
        )
        raw_q, raw_r = (
            c_f.numpy_to_torch(x).to(self.device) for x in (query_labels, reference_labels)
        )
        _check_like_pml(
            query, raw_q.type(torch.float), reference, raw_r.type(torch.float), ref_includes_query
        )
        query_labels, reference_labels = _labels(raw_q, raw_r)
        self.curr_function_dict = self.get_function_dict(include, exclude)
        kwargs = {
            'query': query,
            'reference': reference,
            'query_labels': query_labels,
            'reference_labels': reference_labels,
            'ref_includes_query': ref_includes_query,
            'label_comparison_fn': self.label_comparison_fn,
        }
        functions = dict(self.curr_function_dict)
        if any(x in self.requires_knn() for x in self.get_curr_metrics()):
            functions.update(self._knn(kwargs))
        if any(x in self.requires_clustering() for x in self.get_curr_metrics()):
            kwargs['cluster_labels'] = self.get_cluster_labels(**kwargs)
        return self._get_accuracy(functions, **kwargs)

    def _default_knn(self) -> bool:
        """Whether the k-NN is PML's default (faiss flat L2, fresh index) on equality labels."""
        knn = self.knn_func
        return (
            self.label_comparison_fn is pml_acc.EQUALITY
            and type(knn) is FaissKNN
            and knn.reset_before
            and knn.gpus is None
            and knn_search.faiss is not None
            and knn.index_init_fn is knn_search.faiss.IndexFlatL2
        )

    def _knn(self, kwargs: dict) -> dict:
        """Adds PML's k-NN keyword arguments to ``kwargs``; returns the metrics computed here
        (as functions returning their value)."""
        query, reference = kwargs['query'], kwargs['reference']
        query_labels, reference_labels = kwargs['query_labels'], kwargs['reference_labels']
        own = kwargs['ref_includes_query']
        relevant = relevant_counts(query_labels, reference_labels, own)
        counts = relevant + int(own)
        unique = torch.unique(query_labels, dim=0)
        label_counts = (unique, relevant_counts(unique, reference_labels, False))
        not_lone = relevant > 0 if own else counts > 0
        lone = torch.unique(query_labels[~not_lone])
        num_k = self.determine_k(label_counts[1], len(reference), own)
        kwargs.update(
            label_counts=label_counts, lone_query_labels=lone, not_lone_query_mask=not_lone
        )
        fast = self._vectorised_metrics()
        if not self._fast_path_proven(fast, query, reference):
            fast = []  # PML's k-NN and metric code for everything
            kwargs.update(self._pml_neighbours(kwargs, num_k))
        if not bool(not_lone.any()):
            c_f.LOGGER.warning('None of the query labels are in the reference set.')
        if not fast:
            return {}
        values = chunked_per_query(
            query,
            query_labels,
            reference,
            reference_labels,
            own,
            fast,
            num_k,
            relevant.clamp(min=0),
            self.backend,
            self.max_memory_bytes,
        )
        return {
            name: _constant(self._average(values[name], query_labels, not_lone, unique))
            for name in fast
        }

    def _fast_path_proven(self, fast: list[str], query: Tensor, reference: Tensor) -> bool:
        """Whether every metric asked for is one computed here (or PML's clustering ones,
        which never read the neighbours) and the embeddings allow the tie check's bound."""
        clustering = {m for m in ('NMI', 'AMI') if not self._overridden(f'calculate_{m}')}
        finite = all(bool(torch.isfinite(x.pow(2).sum(1)).all()) for x in (query, reference))
        return (
            finite
            and not set(self.curr_function_dict) - set(fast) - clustering
            and not self._overridden('_get_accuracy')
        )

    def _pml_neighbours(self, kwargs: dict, num_k: int) -> dict:
        """PML's ``knn_labels`` / ``knn_distances`` from PML's own k-NN, except that
        neighbours beyond the references are misses (PML reads label[-1] there)."""
        reference, own = kwargs['reference'], kwargs['ref_includes_query']
        distances, indices = self.knn_func(kwargs['query'], num_k, reference, own)
        labels = kwargs['reference_labels'][indices]
        available = len(reference) - int(own)
        if num_k > available:
            every = torch.cat([kwargs['query_labels'], kwargs['reference_labels']])
            labels[:, available:] = _missing(every)
        return {'knn_labels': labels, 'knn_distances': distances}

    def _vectorised_metrics(self) -> list[str]:
        return [
            name
            for name in self.curr_function_dict
            if name in _VECTORISED and not self._overridden(f'calculate_{name}')
        ]

    def _overridden(self, method: str) -> bool:
        return getattr(type(self), method) is not getattr(AccuracyCalculator, method)

    def _average(self, values: Tensor, labels: Tensor, not_lone: Tensor, unique: Tensor):
        if not bool(not_lone.any()):
            return pml_acc.nan_accuracy(unique, self.return_per_class)
        return pml_acc.maybe_get_avg_of_avgs(
            values[not_lone], labels[not_lone][:, None], self.avg_of_avgs, self.return_per_class
        )


def _labels_not_1d(*labels) -> bool:
    return any(x is not None and len(getattr(x, 'shape', ())) != 1 for x in labels)


def _check_like_pml(query, query_labels, reference, reference_labels, ref_includes_query):
    """PML's input checks, with its messages."""
    if len(query) != len(query_labels) or len(reference) != len(reference_labels):
        raise ValueError('embeddings and labels must have the same length')
    if ref_includes_query and not (
        torch.allclose(query, reference[: len(query)])
        and torch.allclose(query_labels, reference_labels[: len(query)])
    ):
        raise ValueError(
            'When ref_includes_query is True, the first len(query) elements of reference must '
            'be equal to query.\nLikewise, the first len(query_labels) elements of '
            'reference_labels must be equal to query_labels.\n'
        )


def _labels(query_labels: Tensor, reference_labels: Tensor) -> tuple[Tensor, Tensor]:
    """PML's float32 labels where that cast is exact; int64 where it would merge labels."""
    both = (query_labels, reference_labels)
    if any(x.is_floating_point() for x in both):
        return tuple(x.type(torch.float) for x in both)
    exact = all(x.numel() == 0 or int(x.long().abs().max()) < _FLOAT32_EXACT for x in both)
    return tuple(x.type(torch.float) if exact else x.long() for x in both)


def _missing(labels: Tensor):
    """A label no query or reference has (for neighbours that do not exist)."""
    if labels.is_floating_point():
        return float('nan')
    return int(labels.min()) - 1 if labels.numel() else -1


def _constant(value):
    return lambda **kwargs: value


class SklearnKMeans:
    """k-means for NMI / AMI when faiss is not installed (PML's default needs faiss)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def __call__(self, x: Tensor, num_clusters: int) -> Tensor:
        return kmeans_clusters(x, num_clusters, self.seed)
