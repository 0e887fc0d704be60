"""mmengine metric for deep metric learning: leave-one-out retrieval on the test embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.evaluator import BaseMetric

from gpo_plugin.registry import METRICS

from .functional.knn_metrics import DEFAULT_MEMORY_BYTES, clustering_nmi, retrieval_metrics

# Each benchmark's customary Recall@K set in the DML literature.
CUSTOMARY_RECALL_KS = {
    'cub': (1, 2, 4, 8),
    'cars': (1, 2, 4, 8),
    'sop': (1, 10, 100, 1000),
    'inshop': (1, 10, 20, 30, 40),
}
PROTOCOLS = ('leave_one_out', 'query_gallery')


@METRICS.register_module()
class MetricLearningMetric(BaseMetric):
    """P@1, R-Precision, MAP@R (PML ``AccuracyCalculator`` values with ``k='max_bin_count'``),
    Recall@K, optional NMI.

    ``protocol='leave_one_out'``: every test sample is a query against all the others (the
    class-disjoint CUB/Cars/SOP protocol). ``protocol='query_gallery'`` (In-Shop): the samples
    whose ``is_query`` is true are the queries, the others the gallery they search. The k-NN
    runs in chunks of bounded memory (docs/dml.md#metrics).

    Each data sample must carry ``embedding`` (D,) (set by ``MetricLearningHead.predict``) and
    ``gt_label`` (and ``is_query`` for ``'query_gallery'``).

    Args:
        recall_ks: K of the conventional Recall@K, or a benchmark's name for its customary set
            (``'cub'``, ``'cars'``: 1, 2, 4, 8; ``'sop'``: 1, 10, 100, 1000; ``'inshop'``:
            1, 10, 20, 30, 40). Defaults to (1, 2, 4, 8).
        protocol: ``'leave_one_out'`` or ``'query_gallery'``.
        with_nmi: also compute NMI of a k-means clustering (slow on SOP). Defaults to False.
        normalize: l2-normalise the embeddings first. Defaults to True.
        backend: ``'auto'``, ``'torch'`` or ``'faiss'``. Defaults to ``'auto'``.
        max_memory_bytes: bound on the torch distance block. Defaults to 256 MiB.
        collect_device: ``'cpu'`` or ``'gpu'``. prefix: key prefix, defaults to ``'dml'``.

    Keys: ``dml/precision_at_1``, ``dml/r_precision``, ``dml/mean_average_precision_at_r``,
    ``dml/recall_at_K`` and ``dml/nmi``.
    """

    default_prefix = 'dml'

    def __init__(
        self,
        recall_ks: Sequence[int] | str = (1, 2, 4, 8),
        with_nmi: bool = False,
        normalize: bool = True,
        backend: str = 'auto',
        max_memory_bytes: int = DEFAULT_MEMORY_BYTES,
        collect_device: str = 'cpu',
        prefix: str | None = None,
        protocol: str = 'leave_one_out',
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if isinstance(recall_ks, str):
            if recall_ks not in CUSTOMARY_RECALL_KS:
                raise ValueError(
                    f'MetricLearningMetric: recall_ks={recall_ks!r} is not one of '
                    f'{sorted(CUSTOMARY_RECALL_KS)} (or give the K values as a tuple).'
                )
            recall_ks = CUSTOMARY_RECALL_KS[recall_ks]
        if protocol not in PROTOCOLS:
            raise ValueError(
                f'MetricLearningMetric: protocol must be one of {PROTOCOLS}, got {protocol!r}.'
            )
        self.protocol = protocol
        self.recall_ks = tuple(recall_ks)
        self.with_nmi = with_nmi
        self.normalize = normalize
        self.backend = backend
        self.max_memory_bytes = max_memory_bytes

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if 'embedding' not in sample:
                raise KeyError(
                    'MetricLearningMetric: data samples carry no `embedding`; use a '
                    'model whose head is `MetricLearningHead` (model.head.type).'
                )
            if self.protocol == 'query_gallery' and 'is_query' not in sample:
                raise KeyError(
                    "MetricLearningMetric: protocol='query_gallery' needs `is_query` in every "
                    'data sample (True for queries, False for the gallery); set it in the '
                    'dataset, or use the default leave_one_out protocol.'
                )
            self.results.append(
                (
                    sample['embedding'].detach().float().cpu(),
                    int(torch.as_tensor(sample['gt_label']).reshape(-1)[0]),
                    bool(sample.get('is_query', True)),
                )
            )

    def compute_metrics(self, results: list) -> dict[str, float]:
        embeddings = torch.stack([result[0] for result in results])
        labels = torch.tensor([result[1] for result in results])
        if self.normalize:
            embeddings = torch.nn.functional.normalize(embeddings, dim=1)
        options = dict(backend=self.backend, max_memory_bytes=self.max_memory_bytes)
        if self.protocol == 'query_gallery':
            is_query = torch.tensor([result[2] for result in results])
            if bool(is_query.all()) or not bool(is_query.any()):
                raise ValueError(
                    "MetricLearningMetric: protocol='query_gallery' needs both queries and "
                    f'gallery samples; got {int(is_query.sum())} queries of {len(results)}.'
                )
            options.update(query=embeddings[is_query], query_labels=labels[is_query])
            embeddings, labels = embeddings[~is_query], labels[~is_query]
        metrics = retrieval_metrics(embeddings, labels, self.recall_ks, **options)
        if self.with_nmi:
            metrics['nmi'] = clustering_nmi(embeddings, labels)
        return metrics
