"""Exact top-k over galleries larger than memory allows at once: a chunked scan and a
saved index (faiss when installed, torch otherwise) (docs/vse.md#using-a-trained-model).

The order is the one of the exact evaluation: scores ``query @ gallery.T`` from highest to
lowest, equal scores ordered by :func:`select_topk`'s ``tie_rule``. Every path (one
product, chunks, faiss) ends in :func:`select_topk`, so all give the same top-k.
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

TIE_RULES = ('argsort', 'index')


def select_topk(
    scores: Tensor, ids: Tensor, k: int, tie_rule: str = 'argsort'
) -> tuple[Tensor, Tensor]:
    """The ``k`` best (score, id) of each row, best first, ties broken by ``tie_rule``.

    Args:
        scores: (Q, M) scores of M candidates per query.
        ids: (M,) or (Q, M) gallery indices of the candidates.
        k: how many to keep (at most M).
        tie_rule: ``'argsort'``: among equal scores the larger gallery index first, the
            order of the published ``np.argsort(scores)[::-1]`` (a stable ascending sort,
            reversed); ``'index'``: the smaller index first.

    Returns:
        scores (Q, k) and ids (Q, k).
    """
    if tie_rule not in TIE_RULES:
        raise ValueError(f'select_topk: tie_rule must be one of {TIE_RULES}, got {tie_rule!r}.')
    ids = ids.expand_as(scores) if ids.dim() == 1 else ids
    k = min(k, scores.shape[1])
    if k == 0:
        return scores[:, :0], ids[:, :0]
    # Keep every candidate tied with a row's k-th score, then order exactly.
    kth = scores.topk(k, dim=1).values[:, -1:]
    keep = int((scores >= kth).sum(dim=1).max())
    if keep < scores.shape[1]:
        scores, pos = scores.topk(keep, dim=1)
        ids = ids.gather(1, pos)
    by_id = ids.sort(dim=1, descending=tie_rule == 'argsort', stable=True).indices
    scores, ids = scores.gather(1, by_id), ids.gather(1, by_id)
    order = scores.sort(dim=1, descending=True, stable=True).indices[:, :k]
    return scores.gather(1, order), ids.gather(1, order)


def chunked_topk(
    queries: Tensor,
    gallery,
    k: int,
    tie_rule: str = 'argsort',
    chunk_size: int = 65536,
    show_progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """Exact top-k of ``queries @ gallery.T`` scanning the gallery ``chunk_size`` rows at a
    time: memory (Q, chunk_size + k) instead of (Q, N).

    Args:
        queries: (Q, E).
        gallery: (N, E) tensor or array (a memory-mapped ``.npy`` works: only one chunk is
            read at a time).
        k: results per query.
        tie_rule: see :func:`select_topk`.
        chunk_size: gallery rows per product.
        show_progress: mmengine's progress bar over the gallery rows.

    Returns:
        scores (Q, k) and gallery indices (Q, k), best first.
    """
    total = len(gallery)
    bar = _progress(total) if show_progress and total > chunk_size else None
    best_s = queries.new_empty(len(queries), 0)
    best_i = torch.empty(len(queries), 0, dtype=torch.long)
    for start in range(0, total, chunk_size):
        part = gallery[start : start + chunk_size]
        if not isinstance(part, Tensor):  # arrays, memory-mapped ones included: a copy
            part = torch.from_numpy(np.array(part, dtype=np.float32))
        scores = queries @ part.to(queries.dtype).t()
        ids = torch.arange(start, start + len(part))
        best_s, best_i = select_topk(
            torch.cat([best_s, scores], 1),
            torch.cat([best_i, ids.expand(len(queries), -1)], 1),
            k,
            tie_rule,
        )
        if bar is not None:
            bar.update(len(part))
    if bar is not None:
        bar.file.write('\n')
    return best_s, best_i


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
    per query, which are scored again with torch and ordered by :func:`select_topk`, so the
    result equals the exact evaluation's top-k. Without faiss the vectors are scanned in
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
        tie_rule: str = 'argsort',
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
        _, cand = self._index.search(np.ascontiguousarray(queries.numpy()), wide)
        cand = torch.from_numpy(cand)
        vecs = torch.from_numpy(self.vectors(cand.reshape(-1).numpy())).view(*cand.shape, -1)
        scores = torch.bmm(vecs, queries.unsqueeze(-1)).squeeze(-1)
        return select_topk(scores, cand, k, tie_rule)

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
