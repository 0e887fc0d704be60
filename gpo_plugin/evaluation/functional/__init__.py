from .knn_metrics import (clustering_nmi, knn, metrics_from_neighbours, relevant_counts,
                          retrieval_metrics)
from .retrieval_ranks import retrieval_ranks, summarize_ranks  # noqa: F401

__all__ = ['clustering_nmi', 'knn', 'metrics_from_neighbours', 'relevant_counts',
           'retrieval_metrics']
