"""Inferencers, as mmpretrain's ``apis``: :class:`VSEInferencer` for using a trained VSE model and
the retrieval index it builds."""

from .inferencer import VSEInferencer  # noqa: F401
from .retrieval_index import EmbeddingIndex, chunked_topk  # noqa: F401
