"""Image–text retrieval ranks without sorting, in bounded memory (docs/vse.md#evaluation-protocol).

Ties between the ground truth and another candidate are resolved by a ``tie_rule``:

- ``'published'`` (default): the position in ``np.argsort(scores)[::-1]``, as the published
  VSE evaluation code (VSE++, SCAN, VSE∞ ``i2t`` / ``t2i``) takes it. Rows whose ground
  truth is tied (or that hold NaN) are handed to that very ``np.argsort`` on the same float
  scores; every other row is counted, which gives the same position without sorting.
- ``'optimistic'``: the number of candidates scored strictly higher (ties count for the truth).
- ``'pessimistic'``: the number of other candidates scored higher or equal (ties count against).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

TIE_RULES = ('published', 'optimistic', 'pessimistic')
# Columns of the score matrix gathered at once for the rows resolved by argsort.
_GATHER_BYTES = 256 << 20
# Score-block columns compared at once (256 rows x 1024 columns of float32 = 1 MiB).
_SLICE = 1024


def check_tie_rule(tie_rule: str) -> str:
    if tie_rule not in TIE_RULES:
        raise ValueError(f'tie_rule must be one of {TIE_RULES}, got {tie_rule!r}.')
    return tie_rule


def _check(img_emb: Tensor, txt_emb: Tensor, txt_img: Tensor) -> None:
    if img_emb.dim() != 2 or txt_emb.dim() != 2 or img_emb.shape[1] != txt_emb.shape[1]:
        raise ValueError(
            'retrieval_ranks: embeddings must be (N_img, D) and (N_txt, D), got '
            f'{tuple(img_emb.shape)} and {tuple(txt_emb.shape)}.'
        )
    if txt_img.shape != (txt_emb.shape[0],):
        raise ValueError(
            f'retrieval_ranks: txt_img must be (N_txt,) = ({txt_emb.shape[0]},), '
            f'got {tuple(txt_img.shape)}.'
        )
    if len(txt_img) and (int(txt_img.min()) < 0 or int(txt_img.max()) >= img_emb.shape[0]):
        raise ValueError(
            f'retrieval_ranks: txt_img must index rows of img_emb (0..{img_emb.shape[0] - 1}).'
        )


class RetrievalRanks(NamedTuple):
    """0-based ranks; the ``fold_*`` ones are within each fold (None without folds)."""

    i2t: Tensor
    t2i: Tensor
    fold_i2t: Tensor | None = None
    fold_t2i: Tensor | None = None


def published_position(scores: np.ndarray, targets: np.ndarray) -> int:
    """Best position of ``targets`` in ``np.argsort(scores)[::-1]`` (the published rule)."""
    order = np.argsort(scores)[::-1]
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    return int(position[targets].min())


def rule_position(scores: np.ndarray, targets: np.ndarray, tie_rule: str) -> int:
    """0-based rank of the best of ``targets`` among ``scores`` (1-D) under ``tie_rule``."""
    if tie_rule == 'published':
        return published_position(scores, targets)
    best = scores[targets].max()
    others = np.delete(scores, targets)
    if tie_rule == 'optimistic':
        return int(np.count_nonzero(others > best))
    return int(np.count_nonzero(others >= best))


def _float_scores(emb: Tensor) -> Tensor:
    """Half and bfloat16 embeddings are scored in float32, as numpy scores them."""
    return emb.float() if emb.dtype in (torch.float16, torch.bfloat16) else emb


@torch.no_grad()
def retrieval_ranks(
    img_emb: Tensor,
    txt_emb: Tensor,
    txt_img: Tensor,
    chunk_size: int = 256,
    fold_size: int | None = None,
    tie_rule: str = 'published',
) -> RetrievalRanks:
    """0-based retrieval ranks both ways, with similarity = dot product, in one blocked pass.

    Without ties a rank is the number of candidates scored strictly higher than the
    ground truth, its position in a descending argsort; ties are resolved by ``tie_rule``
    (module docstring). Image-to-text takes the best rank among an image's captions.
    The score matrix (float32 for half / bfloat16 embeddings, else their dtype) is
    computed once, ``chunk_size`` image rows at a time (memory ``chunk_size x N_txt``
    scores), and each block serves the full-set ranks and, with ``fold_size``, the ranks
    within consecutive folds of ``fold_size`` images and their captions (COCO 1K).
    Captions whose column needs an argsort (tied or NaN ground truth) take a second pass
    that recomputes the same blocks and gathers their columns; so do the rare captions
    whose ground-truth score, taken beforehand from the diagonal blocks of the product,
    rounds differently from its entry in the full block.

    Args:
        img_emb: (N_img, D) image embeddings.
        txt_emb: (N_txt, D) caption embeddings.
        txt_img: (N_txt,) long, the image row of each caption; every image needs at least
            one caption.
        chunk_size: image rows of the score matrix held at once.
        fold_size: images per fold, dividing N_img; None for no folds.
        tie_rule: ``'published'``, ``'optimistic'`` or ``'pessimistic'``.

    Returns:
        :class:`RetrievalRanks` of (N_img,) and (N_txt,) long tensors.
    """
    check_tie_rule(tie_rule)
    _check(img_emb, txt_emb, txt_img)
    img_emb, txt_emb = _float_scores(img_emb), _float_scores(txt_emb)
    device, n_img = img_emb.device, img_emb.shape[0]
    if fold_size is not None and (fold_size < 1 or n_img % fold_size):
        raise ValueError(f'retrieval_ranks: fold_size={fold_size} must divide N_img={n_img}.')
    # Captions sorted by image: each image's captions, and each fold's, are then a
    # contiguous column range of the score matrix.
    cap_img = txt_img.to(device).long()
    in_order = bool((cap_img[1:] >= cap_img[:-1]).all())
    order = torch.arange(len(cap_img), device=device)
    if not in_order:
        order = torch.argsort(cap_img, stable=True)
    # Captions usually come grouped by image already: then no 100 MB gather is needed.
    txt, cap_img = (txt_emb, cap_img) if in_order else (txt_emb[order], cap_img[order])
    images = torch.arange(n_img, device=device)
    first = torch.searchsorted(cap_img, images)
    last = torch.searchsorted(cap_img, images, right=True)
    if bool((last == first).any()):
        raise ValueError('retrieval_ranks: every image needs at least one caption.')
    state = _Pass(img_emb, txt, cap_img, order, first, last, fold_size, chunk_size, tie_rule)
    state.run()
    state.resolve_columns()
    i2t, t2i, fold_i2t, fold_t2i = state.i2t, state.t2i, state.fold_i2t, state.fold_t2i
    if not in_order:
        unsort = torch.empty_like(order)
        unsort[order] = torch.arange(len(order), device=device)
        t2i = t2i[unsort]
        fold_t2i = fold_t2i[unsort] if fold_size else None
    fold_i2t = fold_i2t.long() if fold_size else None
    fold_t2i = fold_t2i.long() if fold_size else None
    return RetrievalRanks(i2t.long(), t2i.long(), fold_i2t, fold_t2i)


class _Pass:
    """The blocked pass over the score matrix and its per-row / per-column bookkeeping."""

    def __init__(self, img, txt, cap_img, order, first, last, fold_size, chunk_size, tie_rule):
        self.img, self.txt, self.cap_img, self.order = img, txt, cap_img, order
        self.first, self.last, self.rule = first, last, tie_rule
        self.fold_size = fold_size
        n_img, n_txt, device = len(img), len(txt), img.device
        self.block = fold_size or n_img
        self.chunk = max(1, min(chunk_size, self.block))
        # Counts are summed in int32 from a uint8 view of the comparison: reducing booleans
        # into int64 costs 15x more on CPU, and into int32 7x more along rows.
        self.i2t = torch.empty(n_img, dtype=torch.int32, device=device)
        self.t2i = torch.zeros(n_txt, dtype=torch.int32, device=device)
        self.fold_i2t = torch.empty_like(self.i2t) if fold_size else None
        self.fold_t2i = torch.zeros_like(self.t2i) if fold_size else None
        exact = tie_rule != 'optimistic'
        # Ties of each column's truth with another image (full set, within the fold).
        self.t2i_eq = torch.zeros_like(self.t2i) if exact else None
        self.fold_t2i_eq = torch.zeros_like(self.t2i) if exact and fold_size else None
        self.nan_col = torch.zeros(n_txt, dtype=torch.bool, device=device)
        self.fold_nan_col = torch.zeros_like(self.nan_col)
        self.truth = self._truth()
        self.mismatch = torch.zeros_like(self.nan_col)
        self.finite = _bounded_scores(img, txt)

    def blocks(self):
        """(fold columns, start, stop) of every row block, folds never straddled."""
        n_img = len(self.img)
        for lo in range(0, n_img, self.block):
            cols = slice(int(self.first[lo]), int(self.last[lo + self.block - 1]))
            for start in range(lo, lo + self.block, self.chunk):
                yield cols, start, min(start + self.chunk, lo + self.block)

    def _truth(self) -> Tensor:
        """Ground-truth score of each caption, from the diagonal blocks of the same product.

        The pass checks each one against the full block's own entry; a caption where the two
        products round differently is resolved from its gathered column instead.
        """
        truth = torch.empty(len(self.txt), dtype=self.img.dtype, device=self.img.device)
        for _, start, stop in self.blocks():
            lo, hi = int(self.first[start]), int(self.last[stop - 1])
            block = self.img[start:stop] @ self.txt[lo:hi].t()
            rows = self.cap_img[lo:hi] - start
            truth[lo:hi] = block[rows, torch.arange(hi - lo, device=block.device)]
        return truth

    def run(self) -> None:
        for cols, start, stop in self.blocks():
            scores = self.img[start:stop] @ self.txt.t()  # (c, N_txt)
            self._block(scores, start, stop, cols)

    def _block(self, scores: Tensor, start: int, stop: int, cols: slice) -> None:
        """Both ways' counts of one row block, a cache-sized slice of columns at a time."""
        n, device = stop - start, scores.device
        own_col = torch.arange(int(self.first[start]), int(self.last[stop - 1]), device=device)
        own_row = self.cap_img[own_col] - start
        own = scores[own_row, own_col]
        # The caption's own entry is not a competitor: with own == truth it is not counted
        # (nor, below, among the equal ones but once); otherwise its column is gathered.
        truth = self.truth[own_col]
        self.mismatch[own_col] |= (own != truth) & ~(torch.isnan(own) & torch.isnan(truth))
        best = torch.full((n,), -math.inf, dtype=own.dtype, device=device)
        best = best.scatter_reduce(0, own_row, own, 'amax')
        n_own_best = _count_by(own_row, own == best[own_row], n)
        best_col = best.unsqueeze(1)
        exact = self.rule != 'optimistic'
        zeros = [torch.zeros(n, dtype=torch.int32, device=device) for _ in range(4)]
        row_gt, row_eq, fold_gt, fold_eq = zeros
        for lo, hi in self._slices(cols):
            # The four comparisons of a slice run while it is in cache: together about as
            # fast as two over the whole block.
            block, col_truth = scores[:, lo:hi], self.truth[lo:hi]
            in_fold = bool(self.fold_size) and cols.start <= lo and hi <= cols.stop
            gt = _count(block > best_col, dim=1)
            row_gt += gt
            above = _count(block > col_truth, dim=0)
            self.t2i[lo:hi] += above
            if in_fold:
                fold_gt += gt
                # Every row of this block lies in the fold: its column counts are the fold's.
                self.fold_t2i[lo:hi] += above
            if exact:
                eq = _count(block == best_col, dim=1)
                row_eq += eq
                equal = _count(block == col_truth, dim=0)
                self.t2i_eq[lo:hi] += equal
                if in_fold:
                    fold_eq += eq
                    self.fold_t2i_eq[lo:hi] += equal
        nan_row = torch.isnan(best) | (_count_by(own_row, torch.isnan(own), n) > 0)
        if not self.finite and bool(torch.isnan(scores).any()):
            nan_row |= torch.isnan(scores).any(dim=1)
            nan = torch.isnan(scores).any(dim=0)
            self.nan_col |= nan
            self.fold_nan_col[cols] |= nan[cols]
        self.i2t[start:stop] = row_gt
        if self.fold_size:
            self.fold_i2t[start:stop] = fold_gt
        if self.rule == 'pessimistic':
            self.i2t[start:stop] += row_eq - n_own_best
            if self.fold_size:
                self.fold_i2t[start:stop] += fold_eq - n_own_best
        elif self.rule == 'published':
            for r in torch.nonzero((row_eq > 1) | nan_row).flatten().tolist():
                self._argsort_row(scores[r], start + r, cols)

    def _slices(self, cols: slice):
        """Column ranges of at most _SLICE columns, each inside or outside the fold."""
        n_txt = len(self.txt)
        edges = (0, cols.start, cols.stop, n_txt) if self.fold_size else (0, n_txt)
        for a, b in zip(edges[:-1], edges[1:], strict=False):
            for lo in range(a, b, _SLICE):
                yield lo, min(lo + _SLICE, b)

    def _argsort_row(self, row: Tensor, image: int, cols: slice) -> None:
        """The published rank of one image, from its row in the original caption order."""
        own = torch.arange(int(self.first[image]), int(self.last[image]))
        captions = self.order.cpu()
        scores = np.empty(len(captions), dtype=_np_dtype(row))
        scores[captions.numpy()] = row.cpu().numpy()
        self.i2t[image] = published_position(scores, captions[own].numpy())
        if self.fold_size:
            in_fold = np.sort(captions[cols].numpy())  # the fold's captions, in data order
            targets = np.searchsorted(in_fold, captions[own].numpy())
            self.fold_i2t[image] = published_position(scores[in_fold], targets)

    def resolve_columns(self) -> None:
        """Equal-to-truth counts become ranks; tied / NaN / mismatched columns are gathered."""
        nan_truth = torch.isnan(self.truth)
        self.nan_col |= nan_truth
        self.fold_nan_col |= nan_truth
        # The own entry counted once among the equal ones when it equals the truth.
        if self.rule == 'pessimistic':
            self.t2i += self.t2i_eq - 1
            if self.fold_size:
                self.fold_t2i += self.fold_t2i_eq - 1
        redo = self.mismatch | nan_truth
        if self.rule == 'published':
            redo |= self.nan_col | (self.t2i_eq > 1)
            if self.fold_size:
                redo |= self.fold_nan_col | (self.fold_t2i_eq > 1)
        self._gather_and_rank(torch.nonzero(redo).flatten())

    def _gather_and_rank(self, columns: Tensor) -> None:
        n_img = len(self.img)
        per_group = max(1, _GATHER_BYTES // (n_img * self.img.element_size()))
        for lo in range(0, len(columns), per_group):
            group = columns[lo : lo + per_group]
            gathered = torch.empty(n_img, len(group), dtype=self.img.dtype, device=self.img.device)
            for _, start, stop in self.blocks():
                # The very product of the first pass (same operands, same shapes).
                gathered[start:stop] = (self.img[start:stop] @ self.txt.t())[:, group]
            gathered = gathered.cpu().numpy()
            for g, caption in enumerate(group.tolist()):
                image = int(self.cap_img[caption])
                self.t2i[caption] = rule_position(gathered[:, g], np.array([image]), self.rule)
                if self.fold_size:
                    lo_img = image - image % self.fold_size
                    fold = gathered[lo_img : lo_img + self.fold_size, g]
                    rank = rule_position(fold, np.array([image - lo_img]), self.rule)
                    self.fold_t2i[caption] = rank


def _bounded_scores(img: Tensor, txt: Tensor) -> bool:
    """Whether no score can be NaN: finite embeddings whose norms' product (which bounds
    every partial sum of a dot product) stays below the dtype's largest value."""
    if not (bool(torch.isfinite(img).all()) and bool(torch.isfinite(txt).all())):
        return False
    bound = float(img.double().norm(dim=1).max()) * float(txt.double().norm(dim=1).max())
    return bound < torch.finfo(img.dtype).max / 2


def _np_dtype(t: Tensor):
    return np.float64 if t.dtype == torch.float64 else np.float32


def _count(mask: Tensor, dim: int) -> Tensor:
    """int32 number of True entries along ``dim`` of a boolean matrix."""
    return mask.view(torch.uint8).sum(dim=dim, dtype=torch.int32)


def _count_by(index: Tensor, mask: Tensor, size: int) -> Tensor:
    """int32 number of True entries of ``mask`` per value of ``index``."""
    out = torch.zeros(size, dtype=torch.int32, device=mask.device)
    return out.index_add_(0, index, mask.int())


def per_fold_summaries(
    ranks: RetrievalRanks, txt_img: Tensor, fold_size: int
) -> list[dict[str, float]]:
    """Metrics of :func:`summarize_ranks` of each fold, in fold order."""
    num_folds = len(ranks.fold_i2t) // fold_size
    txt_fold = txt_img.to(ranks.fold_t2i.device) // fold_size
    return [
        summarize_ranks(
            ranks.fold_i2t[f * fold_size : (f + 1) * fold_size], ranks.fold_t2i[txt_fold == f]
        )
        for f in range(num_folds)
    ]


def fold_summaries(ranks: RetrievalRanks, txt_img: Tensor, fold_size: int) -> dict[str, float]:
    """Metrics of :func:`summarize_ranks` per fold, averaged over the folds."""
    per_fold = per_fold_summaries(ranks, txt_img, fold_size)
    return {key: float(np.mean([m[key] for m in per_fold])) for key in per_fold[0]}


def summarize_ranks(i2t: Tensor, t2i: Tensor) -> dict[str, float]:
    """R@1/5/10 (percent), median and mean rank (1-based, medr floored) both ways, rSum."""
    out: dict[str, float] = {}
    for name, ranks in (('i2t', i2t), ('t2i', t2i)):
        ranks = ranks.cpu().numpy()
        for k in (1, 5, 10):
            out[f'{name}_R@{k}'] = 100.0 * int(np.count_nonzero(ranks < k)) / len(ranks)
        out[f'{name}_medr'] = float(np.floor(np.median(ranks))) + 1
        out[f'{name}_meanr'] = float(ranks.mean()) + 1
    out['rsum'] = sum(out[f'{d}_R@{k}'] for d in ('i2t', 't2i') for k in (1, 5, 10))
    return out


def topk_by_rule(scores: Tensor, k: int, tie_rule: str = 'published') -> tuple[Tensor, Tensor]:
    """The ``k`` best columns of each row of ``scores`` (Q, N): (values, indices), best first.

    ``'published'`` orders as ``np.argsort(row)[::-1]`` does (the order the published
    evaluation ranks in, ties included); the other rules, which concern a ground truth, order
    equal scores by ascending index.
    """
    check_tie_rule(tie_rule)
    k = min(k, scores.shape[1])
    rows = _float_scores(scores).detach().cpu()
    if tie_rule == 'published':
        order = np.argsort(rows.numpy(), axis=1)[:, ::-1][:, :k]
        indices = torch.from_numpy(np.ascontiguousarray(order))
    else:
        indices = torch.argsort(-rows, dim=1, stable=True)[:, :k]
    indices = indices.to(scores.device)
    return scores.gather(1, indices), indices
