from .knn_metrics import (
    clustering_nmi,
    metrics_from_neighbours,
    relevant_counts,
    retrieval_metrics,
)
from .knn_search import knn
from .retrieval_ranks import (  # noqa: F401
    TIE_RULES,
    RetrievalRanks,
    fold_summaries,
    per_fold_summaries,
    published_scores,
    retrieval_ranks,
    summarize_ranks,
    topk_by_rule,
)
from .symmetric_knn import symmetric_knn

__all__ = [
    'clustering_nmi',
    'knn',
    'metrics_from_neighbours',
    'relevant_counts',
    'retrieval_metrics',
    'symmetric_knn',
]
