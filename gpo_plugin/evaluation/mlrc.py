"""MLRC test protocol: the embeddings of the 4 cross-validation models, l2-normalised and
concatenated (4 x 128 -> 512-d), evaluated on the test classes (docs/dml.md#metrics)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .functional.knn_metrics import retrieval_metrics


@torch.no_grad()
def extract_embeddings(model, dataloader, with_is_query: bool = False) -> tuple[Tensor, ...]:
    """Embeddings (N, D) and labels (N,) of a dataloader through a ``MetricLearner``'s
    ``test_step`` (l2-normalised by its head); with ``with_is_query``, also the samples'
    ``is_query`` flags (N,) bool, or None when the samples carry none (leave-one-out data)."""
    model.eval()
    embeddings, labels, flags = [], [], []
    for data in dataloader:
        for sample in model.test_step(data):
            embeddings.append(sample.embedding.float().cpu())
            labels.append(int(sample.gt_label.reshape(-1)[0]))
            flags.append(sample.get('is_query'))
    out = (torch.stack(embeddings), torch.tensor(labels))
    if not with_is_query:
        return out
    return (*out, None if None in flags else torch.tensor([bool(f) for f in flags]))


def _metrics(embeddings: Tensor, labels: Tensor, is_query: Tensor | None, **kwargs) -> dict:
    if is_query is None:  # leave-one-out
        return retrieval_metrics(embeddings, labels, **kwargs)
    return retrieval_metrics(
        embeddings[~is_query],
        labels[~is_query],
        query=embeddings[is_query],
        query_labels=labels[is_query],
        **kwargs,
    )


def concatenated_metrics(
    fold_embeddings: Sequence[Tensor], labels: Tensor, is_query: Tensor | None = None, **kwargs
) -> dict[str, dict[str, float]]:
    """Metrics of each fold's embeddings and of their concatenation (each l2-normalised first,
    the concatenation too): leave-one-out, or with ``is_query`` (N,) bool the flagged samples
    against the others (In-Shop's query/gallery protocol). ``kwargs`` go to
    :func:`retrieval_metrics`."""
    normalized = [F.normalize(e.float(), dim=1) for e in fold_embeddings]
    shapes = {tuple(e.shape) for e in normalized}
    if len(shapes) != 1 or normalized[0].shape[0] != labels.shape[0]:
        raise ValueError(
            f'concatenated_metrics: every fold must embed the same {labels.shape[0]} test images; '
            f'got shapes {sorted(shapes)}.'
        )
    results = {
        f'fold {i}': _metrics(e, labels, is_query, **kwargs) for i, e in enumerate(normalized)
    }
    results['concatenated'] = _metrics(
        F.normalize(torch.cat(normalized, dim=1), dim=1), labels, is_query, **kwargs
    )
    return results
