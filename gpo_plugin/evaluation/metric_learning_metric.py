"""mmengine metric for deep metric learning: leave-one-out retrieval on the test embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.evaluator import BaseMetric

from gpo_plugin.registry import METRICS

from .functional.knn_metrics import DEFAULT_MEMORY_BYTES, clustering_nmi, retrieval_metrics


@METRICS.register_module()
class MetricLearningMetric(BaseMetric):
    """P@1, R-Precision, MAP@R (PML ``AccuracyCalculator`` definitions), Recall@K, optional NMI.

    Every test sample is a query against all the others (the class-disjoint CUB/Cars/SOP
    protocol). The k-NN runs in chunks of bounded memory (torch) or with faiss when installed.

    Each data sample must carry ``embedding`` (D,) (set by ``MetricLearningHead.predict``) and
    ``gt_label``.

    Args:
        recall_ks: K of the conventional Recall@K. Defaults to (1, 2, 4, 8).
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
        recall_ks: Sequence[int] = (1, 2, 4, 8),
        with_nmi: bool = False,
        normalize: bool = True,
        backend: str = 'auto',
        max_memory_bytes: int = DEFAULT_MEMORY_BYTES,
        collect_device: str = 'cpu',
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
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
            self.results.append(
                (
                    sample['embedding'].detach().float().cpu(),
                    int(torch.as_tensor(sample['gt_label']).reshape(-1)[0]),
                )
            )

    def compute_metrics(self, results: list) -> dict[str, float]:
        embeddings = torch.stack([emb for emb, _ in results])
        labels = torch.tensor([label for _, label in results])
        if self.normalize:
            embeddings = torch.nn.functional.normalize(embeddings, dim=1)
        metrics = retrieval_metrics(
            embeddings,
            labels,
            self.recall_ks,
            backend=self.backend,
            max_memory_bytes=self.max_memory_bytes,
        )
        if self.with_nmi:
            metrics['nmi'] = clustering_nmi(embeddings, labels)
        return metrics
