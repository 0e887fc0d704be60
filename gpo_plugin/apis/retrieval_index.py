"""Exact top-k over galleries larger than memory allows at once: a chunked scan and a
saved index (faiss when installed, torch otherwise) (docs/vse.md#using-a-trained-model).

The order is the one of the exact evaluation: the published float64 scores
``query @ gallery.T`` from highest to lowest, ties by ``tie_rule`` (``'published'``:
``np.argsort(row)[::-1][:k]`` of the full float64 row). Every path (chunks, faiss) ends in
:func:`~gpo_plugin.evaluation.functional.retrieval_ranks.finish_topk`, so all give the same
top-k as :func:`~gpo_plugin.evaluation.functional.retrieval_ranks.topk_by_rule`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gpo_plugin.evaluation.functional.retrieval_ranks import finish_topk, topk_by_rule


def chunked_topk(
    queries: Tensor,
    gallery,
    k: int,
    tie_rule: str = 'published',
    chunk_size: int = 65536,
    show_progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """Exact top-k of ``queries @ gallery.T`` scanning the gallery ``chunk_size`` rows at a
    time (:func:`topk_by_rule`): memory (Q, chunk_size + k) instead of (Q, N).

    Args:
        queries: (Q, E).
        gallery: (N, E) tensor or array (a memory-mapped ``.npy`` works: only one chunk is
            read at a time).
        k: results per query.
        tie_rule: ``'published'`` (default), ``'optimistic'`` or ``'pessimistic'``.
        chunk_size: gallery rows per product.
        show_progress: mmengine's progress bar over the gallery rows.

    Returns:
        float64 scores (Q, k) and gallery indices (Q, k), best first.
    """
    total = len(gallery)
    bar = _progress(total) if show_progress and total > chunk_size else None
    scores, ids = topk_by_rule(
        queries, gallery, k, tie_rule, chunk_size, on_chunk=bar.update if bar else None
    )
    if bar is not None:
        bar.file.write('\n')
    return scores, ids


def _progress(total: int):
    from mmengine.utils import ProgressBar

    return ProgressBar(total, file=sys.stdout)


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class EmbeddingIndex:
    """A gallery of unit embeddings, built once, saved, loaded and queried exactly.

    With faiss (``backend='faiss'``, the default when it is installed) the vectors live in
    a flat inner-product index (``IndexFlatIP``); faiss picks ``k + margin`` candidates
    per query, which are scored again in float64 and certified (or, at a tie or near-tie,
    the query's full float64 row is sorted), so the result equals the exact top-k. Without faiss the vectors are scanned in
    chunks with torch (:func:`chunked_topk`).

    Files (no pickles): ``PATH.faiss`` (faiss's own format) or ``PATH.npy`` (the vectors),
    and ``PATH.json`` (backend, size, dimension, item ids).

    Args:
        dim: embedding size.
        backend: ``'faiss'``, ``'torch'`` or ``'auto'`` (faiss when installed).
        ids: optional names of the items (strings), in the order they are added.
    """

    def __init__(self, dim: int, backend: str = 'auto', ids: Sequence[str] | None = None):
        if backend == 'auto':
            backend = 'faiss' if faiss_available() else 'torch'
        if backend not in ('faiss', 'torch'):
            raise ValueError("EmbeddingIndex: backend must be 'faiss', 'torch' or 'auto'.")
        if backend == 'faiss' and not faiss_available():
            raise ImportError("EmbeddingIndex: backend='faiss' needs `pip install faiss-cpu`.")
        self.dim, self.backend = dim, backend
        self.ids = list(ids) if ids is not None else []
        self._chunks: list[np.ndarray] = []
        self._index = None
        if backend == 'faiss':
            import faiss

            self._index = faiss.IndexFlatIP(dim)

    def __len__(self) -> int:
        if self._index is not None:
            return int(self._index.ntotal)
        return sum(len(c) for c in self._chunks)

    def add(self, embeddings: Tensor | np.ndarray) -> None:
        """Append (N, dim) embeddings (float32)."""
        array = np.ascontiguousarray(torch.as_tensor(embeddings).float().numpy())
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise ValueError(
                f'EmbeddingIndex.add: expected (N, {self.dim}) embeddings, got {array.shape}.'
            )
        if self._index is not None:
            self._index.add(array)
        else:
            self._chunks.append(array)

    def vectors(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The stored vectors (all, or ``rows``)."""
        if self._index is not None:
            if rows is None:
                return self._index.reconstruct_n(0, len(self))
            return self._index.reconstruct_batch(np.asarray(rows, dtype=np.int64))
        stacked = np.concatenate(self._chunks) if self._chunks else np.zeros((0, self.dim))
        self._chunks = [stacked]
        return stacked if rows is None else stacked[rows]

    def search(
        self,
        queries: Tensor,
        k: int = 5,
        tie_rule: str = 'published',
        chunk_size: int = 65536,
        margin: int = 16,
        show_progress: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Exact top-k: scores (Q, k) and gallery rows (Q, k), best first."""
        queries = torch.as_tensor(queries).float()
        if queries.shape[-1] != self.dim:
            raise ValueError(
                f'EmbeddingIndex.search: queries are {queries.shape[-1]}-d, the index {self.dim}-d.'
            )
        if len(self) == 0:
            raise ValueError('EmbeddingIndex.search: the index is empty; add() embeddings.')
        if self._index is None:
            return chunked_topk(
                queries, self.vectors(), k, tie_rule, chunk_size, show_progress=show_progress
            )
        wide = min(len(self), k + margin)
        cand_s, cand = self._index.search(np.ascontiguousarray(queries.numpy()), wide)
        rows = _IndexRows(self)
        return finish_topk(
            queries,
            rows,
            torch.from_numpy(cand_s),
            torch.from_numpy(cand),
            min(k, len(self)),
            tie_rule,
            rows.max_norm(chunk_size),
            finite=bool(np.isfinite(cand_s).all()),
            chunk_size=chunk_size,
        )

    def max_norm(self, chunk_size: int = 65536) -> float:
        """Largest vector norm (the error bands of the top-k scale with it), cached."""
        if getattr(self, '_max_norm', None) is None or self._max_norm[0] != len(self):
            rows, norm = _IndexRows(self), 0.0
            for lo in range(0, len(self), chunk_size):
                part = rows[lo : lo + chunk_size].astype(np.float64)
                norm = max(norm, float(np.linalg.norm(part, axis=1).max()))
            self._max_norm = (len(self), norm)
        return self._max_norm[1]

    def save(self, path: str | os.PathLike) -> None:
        """Write ``PATH.faiss`` or ``PATH.npy``, and ``PATH.json``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self._index is not None:
            import faiss

            faiss.write_index(self._index, str(path.with_suffix('.faiss')))
        else:
            np.save(path.with_suffix('.npy'), self.vectors(), allow_pickle=False)
        meta = dict(backend=self.backend, dim=self.dim, size=len(self), ids=self.ids)
        path.with_suffix('.json').write_text(json.dumps(meta), encoding='utf-8')

    @classmethod
    def load(cls, path: str | os.PathLike) -> EmbeddingIndex:
        """Read what :meth:`save` wrote (no pickles)."""
        path = Path(path)
        meta_file = path.with_suffix('.json')
        if not meta_file.is_file():
            raise FileNotFoundError(
                f'EmbeddingIndex.load: {meta_file} not found (written by EmbeddingIndex.save).'
            )
        meta = json.loads(meta_file.read_text(encoding='utf-8'))
        index = cls(meta['dim'], meta['backend'], meta.get('ids'))
        if meta['backend'] == 'faiss':
            import faiss

            index._index = faiss.read_index(str(path.with_suffix('.faiss')))
        else:
            index._chunks = [np.load(path.with_suffix('.npy'), allow_pickle=False)]
        if len(index) != meta['size']:
            raise ValueError(
                f'EmbeddingIndex.load: {path} holds {len(index)} vectors, its metadata says '
                f'{meta["size"]}; the files are from different saves.'
            )
        return index


class _IndexRows:
    """The stored vectors of an :class:`EmbeddingIndex`, read by slices or index arrays."""

    def __init__(self, index: EmbeddingIndex) -> None:
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, rows) -> np.ndarray:
        if isinstance(rows, slice):
            rows = np.arange(*rows.indices(len(self)))
        return self.index.vectors(np.asarray(rows, dtype=np.int64))

    def max_norm(self, chunk_size: int) -> float:
        return self.index.max_norm(chunk_size)
