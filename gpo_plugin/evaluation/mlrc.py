"""MLRC test protocol: the embeddings of the 4 cross-validation models, l2-normalised and
concatenated (4 x 128 -> 512-d), evaluated on the test classes (docs/dml.md#metrics)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .functional.knn_metrics import retrieval_metrics


@torch.no_grad()
def extract_embeddings(model, dataloader) -> tuple[Tensor, Tensor]:
    """Embeddings (N, D) and labels (N,) of a dataloader through a ``MetricLearner``'s
    ``test_step`` (l2-normalised by its head)."""
    model.eval()
    embeddings, labels = [], []
    for data in dataloader:
        for sample in model.test_step(data):
            embeddings.append(sample.embedding.float().cpu())
            labels.append(int(sample.gt_label.reshape(-1)[0]))
    return torch.stack(embeddings), torch.tensor(labels)


def concatenated_metrics(
    fold_embeddings: Sequence[Tensor], labels: Tensor, **kwargs
) -> dict[str, dict[str, float]]:
    """Metrics of each fold's embeddings and of their concatenation (each l2-normalised first,
    the concatenation too). ``kwargs`` go to :func:`retrieval_metrics`."""
    normalized = [F.normalize(e.float(), dim=1) for e in fold_embeddings]
    shapes = {tuple(e.shape) for e in normalized}
    if len(shapes) != 1 or normalized[0].shape[0] != labels.shape[0]:
        raise ValueError(
            f'concatenated_metrics: every fold must embed the same {labels.shape[0]} test images; '
            f'got shapes {sorted(shapes)}.'
        )
    results = {
        f'fold {i}': retrieval_metrics(e, labels, **kwargs) for i, e in enumerate(normalized)
    }
    results['concatenated'] = retrieval_metrics(
        F.normalize(torch.cat(normalized, dim=1), dim=1), labels, **kwargs
    )
    return results
