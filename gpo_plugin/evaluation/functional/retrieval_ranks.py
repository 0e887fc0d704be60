"""Image–text retrieval ranks without sorting, in bounded memory (docs/vse.md#ties).

Scores are those of the published VSE evaluation code (VSE++, SCAN, VSE∞ ``i2t`` / ``t2i``):
its ``encode_data`` copies the float32 embeddings into float64 arrays, so its similarities
are float64 dot products of float32 values. Every ``tie_rule`` is defined on those scores:

- ``'published'`` (default): the position in ``np.argsort(row)[::-1]`` of the float64 row,
  as the published loops take it, ties included.
- ``'optimistic'``: the number of candidates scored strictly higher (ties count for the truth).
- ``'pessimistic'``: the number of other candidates scored higher or equal (ties against).

The fast path counts on the float32 product. A float32 dot product of length ``D`` is
within ``gamma_D * |a| |b|`` of the exact one whatever the order of its sums
(``gamma_D = D u / (1 - D u)``, ``u = 2^-24``), and so is a float64 one with ``u = 2^-53``;
so a candidate scored above (below) the ground truth by more than twice the sum of both
bounds is above (below) it in float64 too. Candidates inside that band are scored again in
float64 (exact products, any order of sums); where two float64 scores lie within the
float64 bound of each other (a tie or a near-tie) the whole row is computed as the
published code computes it -- ``np.matmul`` of the float64-cast embeddings -- and handed to
``np.argsort``. The result equals the published code run on the same machine.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

TIE_RULES = ('published', 'optimistic', 'pessimistic')
# Bytes of float64 scores recomputed at once for the rows / columns handed to argsort.
_RECOMPUTE_BYTES = 256 << 20
# Band candidates scored in float64 at once (two gathered (n, D) float64 matrices).
_PAIRS = 4096
# An image row (caption column) of a block with at least 1/_DENSE_SHARE of its entries in the
# band gets float64 scores for the whole row (column of the block) at once instead of one
# gathered dot product per pair: on one CPU thread a row of 25000 captions costs as much as
# about 90 gathered pairs, a column of 5000 images as much as about 17 (measured at 1024-d).
_DENSE_SHARE = 256
# Score-block columns compared at once (256 rows x 1024 columns of float32 = 1 MiB).
_SLICE = 1024
_U64 = 2.0**-53


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


def published_scores(rows: np.ndarray | Tensor, cols: np.ndarray | Tensor) -> np.ndarray:
    """``np.matmul`` of the float64-cast embeddings: the published code's similarities."""
    rows = _as_numpy(rows).astype(np.float64)
    cols = _as_numpy(cols).astype(np.float64)
    return np.matmul(rows, cols.T)


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        return (x.float() if x.dtype in (torch.float16, torch.bfloat16) else x).numpy()
    return np.asarray(x)


def _float_scores(emb: Tensor) -> Tensor:
    """Half and bfloat16 embeddings are scored in float32 (exactly representable there)."""
    return emb.float() if emb.dtype in (torch.float16, torch.bfloat16) else emb


def unit_roundoff(t: Tensor) -> float:
    """Unit roundoff of a float32 (or float64) product as torch will compute it here:
    reduced-precision matmul settings (TF32, bfloat16) widen it."""
    if t.dtype == torch.float64:
        return _U64
    u = 2.0**-24
    precision = torch.get_float32_matmul_precision()
    if precision == 'medium':
        u = 2.0**-8
    elif precision == 'high':
        u = 2.0**-11
    if t.is_cuda and torch.backends.cuda.matmul.allow_tf32:
        u = max(u, 2.0**-11)
    return u


def dot_error_bound(u: float, dim: int) -> float:
    """``gamma`` with ``|computed - exact| <= gamma |a| |b|`` for any summation order of a
    length-``dim`` dot product (two extra roundings for safety); inf when meaningless."""
    n = (dim + 2) * u
    return n / (1 - n) if n < 1 else math.inf


@torch.no_grad()
def retrieval_ranks(
    img_emb: Tensor,
    txt_emb: Tensor,
    txt_img: Tensor,
    chunk_size: int = 256,
    fold_size: int | None = None,
    tie_rule: str = 'published',
) -> RetrievalRanks:
    """0-based retrieval ranks both ways on the published float64 scores, in one blocked pass.

    A rank is the number of candidates scored higher than the ground truth, its position in
    a descending argsort; ties are resolved by ``tie_rule`` (module docstring). Image-to-text
    takes the best rank among an image's captions. The float32 score matrix is computed
    ``chunk_size`` image rows at a time (memory ``chunk_size x N_txt``) and counted; only
    candidates within the float32 error band of a ground truth are scored again in float64,
    and only rows / columns with a float64 tie or near-tie are recomputed whole and sorted.
    With ``fold_size`` the same block also gives the ranks within consecutive folds of
    ``fold_size`` images and their captions (COCO 1K). Non-finite embeddings are scored
    entirely in float64 (slow, exact).

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
    txt, cap_img = (txt_emb, cap_img) if in_order else (txt_emb[order], cap_img[order])
    images = torch.arange(n_img, device=device)
    first = torch.searchsorted(cap_img, images)
    last = torch.searchsorted(cap_img, images, right=True)
    if bool((last == first).any()):
        raise ValueError('retrieval_ranks: every image needs at least one caption.')
    state = _Pass(img_emb, txt, txt_emb, cap_img, order, first, last, fold_size, chunk_size)
    state.run()
    state.resolve(tie_rule)
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
    """The blocked pass over the score matrix and its per-row / per-column bookkeeping.

    Counts: ``i2t`` / ``t2i`` (and the fold ones) hold the candidates certainly above the
    ground truth; ``redo_row`` / ``redo_col`` mark the rows / columns that need the
    published float64 row and an argsort.
    """

    def __init__(self, img, txt, txt_data, cap_img, order, first, last, fold_size, chunk_size):
        self.img, self.txt, self.txt_data = img, txt, txt_data
        self.cap_img, self.order, self.first, self.last = cap_img, order, first, last
        self.fold_size = fold_size
        n_img, n_txt, device = len(img), len(txt), img.device
        self.block = fold_size or n_img
        self.chunk = max(1, min(chunk_size, self.block))
        # Counts are summed in int32 from a uint8 view of the comparison: reducing booleans
        # into int64 costs 15x more on CPU, and into int32 7x more along rows.
        self.i2t = torch.zeros(n_img, dtype=torch.int32, device=device)
        self.t2i = torch.zeros(n_txt, dtype=torch.int32, device=device)
        self.fold_i2t = torch.zeros_like(self.i2t) if fold_size else None
        self.fold_t2i = torch.zeros_like(self.t2i) if fold_size else None
        self.redo_row = torch.zeros(n_img, dtype=torch.bool, device=device)
        self.redo_col = torch.zeros(n_txt, dtype=torch.bool, device=device)
        self.finite = _bounded_scores(img, txt)
        if not self.finite:
            return
        dim = img.shape[1]
        img_norm, txt_norm = img.double().norm(dim=1), txt.double().norm(dim=1)
        # Half-widths of the bands, with 1% over for the rounding of truth +- band.
        fast = dot_error_bound(unit_roundoff(img), dim) + dot_error_bound(_U64, dim)
        slow = 2 * dot_error_bound(_U64, dim)
        tiny = dim * 2.0**-126  # products below float32's normal range
        max_img, max_txt = float(img_norm.max()), float(txt_norm.max())
        self.row_band = (2.02 * fast * img_norm * max_txt + tiny).to(img.dtype)
        self.col_band = (2.02 * fast * txt_norm * max_img + tiny).to(img.dtype)
        self.row_band64 = 2.02 * slow * img_norm * max_txt + tiny
        self.col_band64 = 2.02 * slow * txt_norm * max_img + tiny
        self.txt64 = None  # float64 copy of txt, made when a crowded row band needs it
        self.truth = self._truth()
        self.truth64 = _pair_scores(img, txt, cap_img, torch.arange(n_txt, device=device))
        best64 = torch.full((n_img,), -math.inf, dtype=torch.float64, device=device)
        self.best64 = best64.scatter_reduce(0, cap_img, self.truth64, 'amax')

    def blocks(self):
        """(fold columns, start, stop) of every row block, folds never straddled."""
        n_img = len(self.img)
        for lo in range(0, n_img, self.block):
            cols = slice(int(self.first[lo]), int(self.last[lo + self.block - 1]))
            for start in range(lo, lo + self.block, self.chunk):
                yield cols, start, min(start + self.chunk, lo + self.block)

    def _truth(self) -> Tensor:
        """Float32 ground-truth score of each caption, from the diagonal blocks (within the
        float32 bound of its entry in the full block: the bands allow for both)."""
        truth = torch.empty(len(self.txt), dtype=self.img.dtype, device=self.img.device)
        for _, start, stop in self.blocks():
            lo, hi = int(self.first[start]), int(self.last[stop - 1])
            block = self.img[start:stop] @ self.txt[lo:hi].t()
            rows = self.cap_img[lo:hi] - start
            truth[lo:hi] = block[rows, torch.arange(hi - lo, device=block.device)]
        return truth

    def run(self) -> None:
        if not self.finite:  # NaN / inf / overflow: every rank from the float64 scores
            self.redo_row[:] = True
            self.redo_col[:] = True
            return
        for cols, start, stop in self.blocks():
            scores = self.img[start:stop] @ self.txt.t()  # (c, N_txt)
            self._block(scores, start, stop, cols)

    def _block(self, scores: Tensor, start: int, stop: int, cols: slice) -> None:
        """Both ways' counts of one row block, a cache-sized slice of columns at a time."""
        n, device = stop - start, scores.device
        own_col = torch.arange(int(self.first[start]), int(self.last[stop - 1]), device=device)
        own_row = self.cap_img[own_col] - start
        own = scores[own_row, own_col]
        best = torch.full((n,), -math.inf, dtype=own.dtype, device=device)
        best = best.scatter_reduce(0, own_row, own, 'amax')
        row_hi = (best + self.row_band[start:stop]).unsqueeze(1)
        row_lo = (best - self.row_band[start:stop]).unsqueeze(1)
        col_hi, col_lo = self.truth + self.col_band, self.truth - self.col_band
        zeros = [torch.zeros(n, dtype=torch.int32, device=device) for _ in range(4)]
        row_gt, row_ge, fold_gt, fold_ge = zeros
        col_band = torch.zeros(len(self.txt), dtype=torch.int32, device=device)
        for lo, hi in self._slices(cols):
            # The four comparisons of a slice run while it is in cache.
            block = scores[:, lo:hi]
            in_fold = bool(self.fold_size) and cols.start <= lo and hi <= cols.stop
            gt = _count(block > row_hi, dim=1)
            ge = _count(block >= row_lo, dim=1)
            row_gt += gt
            row_ge += ge
            above = _count(block > col_hi[lo:hi], dim=0)
            col_band[lo:hi] = _count(block >= col_lo[lo:hi], dim=0) - above
            self.t2i[lo:hi] += above
            if in_fold:
                fold_gt += gt
                fold_ge += ge
                # Every row of this block lies in the fold: its column counts are the fold's.
                self.fold_t2i[lo:hi] += above
        self.i2t[start:stop] = row_gt
        if self.fold_size:
            self.fold_i2t[start:stop] = fold_gt
        # A caption's own entry is no competitor: out of its column's counts, and out of
        # its image's band (it never exceeds the row's best).
        own_above = own > col_hi[own_col]
        self.t2i[own_col] -= own_above.int()
        if self.fold_size:
            self.fold_t2i[own_col] -= own_above.int()
        col_band[own_col] -= ((own >= col_lo[own_col]) & ~own_above).int()
        own_in_band = _count_by(own_row, own >= row_lo[own_row, 0], n)
        band_rows = torch.nonzero(row_ge - row_gt > own_in_band).flatten()
        band_cols = torch.nonzero(col_band > 0).flatten()
        # Rows (columns) with a large share of the block in their band (an untrained or
        # collapsed model) get float64 scores for the whole block at once; the others are
        # rescored pair by pair.
        crowded = (row_ge - row_gt)[band_rows] * _DENSE_SHARE >= len(self.txt)
        for rows, dense in ((band_rows[crowded], True), (band_rows[~crowded], False)):
            if len(rows):
                part = scores[rows]
                in_band = (part >= row_lo[rows]) & (part <= row_hi[rows])
                if dense:
                    self._rescore_rows_dense(rows + start, in_band, cols)
                else:
                    r, c = torch.nonzero(in_band, as_tuple=True)
                    self._rescore_rows(rows[r] + start, c, cols)
        crowded = col_band[band_cols] * _DENSE_SHARE >= n
        for columns, dense in ((band_cols[crowded], True), (band_cols[~crowded], False)):
            if len(columns):
                part = scores[:, columns]
                in_band = (part >= col_lo[columns]) & (part <= col_hi[columns])
                if dense:
                    self._rescore_cols_dense(start, stop, columns, in_band, cols)
                else:
                    r, c = torch.nonzero(in_band, as_tuple=True)
                    self._rescore_cols(r + start, columns[c], cols)

    def _rescore_rows(self, image: Tensor, caption: Tensor, cols: slice) -> None:
        """Band candidates of image rows, in float64: above the truth, or a near-tie."""
        keep = self.cap_img[caption] != image
        image, caption = image[keep], caption[keep]
        diff = _pair_scores(self.img, self.txt, image, caption) - self.best64[image]
        band = self.row_band64[image]
        above = (diff > band).int()
        self.i2t.index_add_(0, image, above)
        self.redo_row[image[diff.abs() <= band]] = True
        if self.fold_size:
            in_fold = (caption >= cols.start) & (caption < cols.stop)
            self.fold_i2t.index_add_(0, image[in_fold], above[in_fold])

    def _rescore_cols(self, image: Tensor, caption: Tensor, cols: slice) -> None:
        """Band candidates of caption columns, in float64 (the same test)."""
        keep = self.cap_img[caption] != image
        image, caption = image[keep], caption[keep]
        diff = _pair_scores(self.img, self.txt, image, caption) - self.truth64[caption]
        band = self.col_band64[caption]
        above = (diff > band).int()
        self.t2i.index_add_(0, caption, above)
        self.redo_col[caption[diff.abs() <= band]] = True
        if self.fold_size:
            in_fold = (caption >= cols.start) & (caption < cols.stop)
            self.fold_t2i.index_add_(0, caption[in_fold], above[in_fold])

    def _rescore_rows_dense(self, images: Tensor, in_band: Tensor, cols: slice) -> None:
        """:meth:`_rescore_rows` for every band candidate of ``images`` at once: their float64
        rows against all captions, reduced where ``in_band`` (images x captions) holds."""
        if self.txt64 is None:
            self.txt64 = self.txt.double()
        per_group = max(1, _RECOMPUTE_BYTES // (8 * len(self.txt)))
        for lo in range(0, len(images), per_group):
            image = images[lo : lo + per_group]
            diff = self.img[image].double() @ self.txt64.t() - self.best64[image, None]
            band = self.row_band64[image, None]
            # A caption of the image itself is no competitor.
            candidate = in_band[lo : lo + per_group] & (self.cap_img[None, :] != image[:, None])
            above = candidate & (diff > band)
            self.i2t.index_add_(0, image, _count(above, dim=1))
            self.redo_row[image[(candidate & (diff.abs() <= band)).any(1)]] = True
            if self.fold_size:
                self.fold_i2t.index_add_(0, image, _count(above[:, cols], dim=1))

    def _rescore_cols_dense(
        self, start: int, stop: int, captions: Tensor, in_band: Tensor, cols: slice
    ) -> None:
        """:meth:`_rescore_cols` for every band candidate of ``captions`` in image rows
        ``start:stop`` at once, reduced where ``in_band`` (rows x captions) holds."""
        diff = self.img[start:stop].double() @ self.txt[captions].double().t()
        diff -= self.truth64[captions]
        band = self.col_band64[captions]
        rows = torch.arange(start, stop, device=captions.device)
        candidate = in_band & (self.cap_img[captions][None, :] != rows[:, None])
        above = _count(candidate & (diff > band), dim=0)
        self.t2i.index_add_(0, captions, above)
        self.redo_col[captions[(candidate & (diff.abs() <= band)).any(0)]] = True
        if self.fold_size:
            in_fold = (captions >= cols.start) & (captions < cols.stop)
            self.fold_t2i.index_add_(0, captions[in_fold], above[in_fold])

    def _slices(self, cols: slice):
        """Column ranges of at most _SLICE columns, each inside or outside the fold."""
        n_txt = len(self.txt)
        edges = (0, cols.start, cols.stop, n_txt) if self.fold_size else (0, n_txt)
        for a, b in zip(edges[:-1], edges[1:], strict=False):
            for lo in range(a, b, _SLICE):
                yield lo, min(lo + _SLICE, b)

    def resolve(self, tie_rule: str) -> None:
        """Rows and columns with a float64 tie or near-tie: the published float64 scores,
        recomputed, ranked by ``tie_rule`` (``np.argsort`` for the published rule)."""
        rows = torch.nonzero(self.redo_row).flatten().tolist()
        per_group = max(1, _RECOMPUTE_BYTES // (8 * max(1, len(self.txt))))
        captions = self.order.cpu().numpy()  # data order of the sorted captions
        for lo in range(0, len(rows), per_group):
            group = rows[lo : lo + per_group]
            sims = published_scores(self.img[group], self.txt_data)  # captions in data order
            for g, image in enumerate(group):
                self._rank_row(sims[g], image, captions, tie_rule)
        columns = torch.nonzero(self.redo_col).flatten()
        per_group = max(1, _RECOMPUTE_BYTES // (8 * len(self.img)))
        for lo in range(0, len(columns), per_group):
            group = columns[lo : lo + per_group]
            sims = published_scores(self.img, self.txt[group])
            for g, caption in enumerate(group.tolist()):
                self._rank_col(sims[:, g], caption, tie_rule)

    def _rank_row(self, row: np.ndarray, image: int, captions: np.ndarray, rule: str) -> None:
        own = captions[int(self.first[image]) : int(self.last[image])]
        self.i2t[image] = rule_position(row, own, rule)
        if self.fold_size:
            lo = image - image % self.fold_size
            cols = slice(int(self.first[lo]), int(self.last[lo + self.fold_size - 1]))
            in_fold = np.sort(captions[cols])  # the fold's captions, in data order
            self.fold_i2t[image] = rule_position(row[in_fold], np.searchsorted(in_fold, own), rule)

    def _rank_col(self, column: np.ndarray, caption: int, rule: str) -> None:
        image = int(self.cap_img[caption])
        self.t2i[caption] = rule_position(column, np.array([image]), rule)
        if self.fold_size:
            lo = image - image % self.fold_size
            fold = column[lo : lo + self.fold_size]
            self.fold_t2i[caption] = rule_position(fold, np.array([image - lo]), rule)


def _pair_scores(img: Tensor, txt: Tensor, image: Tensor, caption: Tensor) -> Tensor:
    """Float64 dot products of the pairs (img[image], txt[caption]): exact products of the
    float32 values, summed in float64."""
    out = torch.empty(len(image), dtype=torch.float64, device=img.device)
    for lo in range(0, len(image), _PAIRS):
        a = img[image[lo : lo + _PAIRS]].double()
        b = txt[caption[lo : lo + _PAIRS]].double()
        out[lo : lo + _PAIRS] = (a * b).sum(dim=1)
    return out


def _bounded_scores(img: Tensor, txt: Tensor) -> bool:
    """Whether no float32 score can overflow: finite embeddings whose norms' product (which
    bounds every partial sum of a dot product) stays below the dtype's largest value."""
    if not (bool(torch.isfinite(img).all()) and bool(torch.isfinite(txt).all())):
        return False
    bound = float(img.double().norm(dim=1).max()) * float(txt.double().norm(dim=1).max())
    return bound < torch.finfo(img.dtype).max / 2


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


def topk_by_rule(
    queries: Tensor,
    gallery,
    k: int,
    tie_rule: str = 'published',
    chunk_size: int = 65536,
    margin: int = 8,
    on_chunk=None,
) -> tuple[Tensor, Tensor]:
    """The ``k`` best gallery rows of each query on the published float64 scores, best first.

    ``'published'`` returns ``np.argsort(row)[::-1][:k]`` of each query's float64 row
    ``query @ gallery.T`` (the order the published evaluation ranks in, ties included); the
    other two rules, which concern a ground truth, order equal scores by ascending index.
    The gallery is scanned ``chunk_size`` rows at a time in float32, keeping ``k + margin``
    candidates per query (memory ``Q x (chunk_size + k + margin)``); the candidates are scored
    again in float64, and a query whose k-th boundary or top-k order is within the error
    bands (a tie or a near-tie, see the module docstring) gets its full float64 row, computed
    chunk by chunk, and ``np.argsort``.

    Args:
        queries: (Q, D) embeddings.
        gallery: (N, D) tensor or array (a memory-mapped ``.npy`` works: one chunk is read at
            a time), or any object with ``len`` and indexing by a slice or an index array.
        k: results per query (at most N).
        tie_rule: ``'published'``, ``'optimistic'`` or ``'pessimistic'``.
        chunk_size: gallery rows per product.
        margin: extra candidates kept per query, so near-ties at the boundary rarely need
            the full row.
        on_chunk: optional callable(number of rows) after each chunk (a progress bar).

    Returns:
        scores (Q, k) float64 and gallery rows (Q, k) long, best first.
    """
    check_tie_rule(tie_rule)
    queries = _float_scores(torch.as_tensor(queries)).detach().cpu()
    if queries.dtype != torch.float64:
        queries = queries.float()
    total = len(gallery)
    k = min(k, total)
    keep = min(total, k + margin)
    best_s = queries.new_empty(len(queries), 0)
    best_i = torch.empty(len(queries), 0, dtype=torch.long)
    max_norm, finite = 0.0, bool(torch.isfinite(queries).all())
    for start in range(0, total, chunk_size):
        part = _rows(gallery, start, min(start + chunk_size, total), queries.dtype)
        finite &= bool(torch.isfinite(part).all())
        if len(part):
            max_norm = max(max_norm, float(part.double().norm(dim=1).max()))
        scores = queries @ part.t() if len(queries) else part.new_empty(0, len(part))
        ids = torch.arange(start, start + len(part)).expand(len(queries), -1)
        all_s, all_i = torch.cat([best_s, scores], 1), torch.cat([best_i, ids], 1)
        best_s, pos = all_s.topk(min(keep, all_s.shape[1]), dim=1)
        best_i = all_i.gather(1, pos)
        if on_chunk is not None:
            on_chunk(len(part))
    return finish_topk(queries, gallery, best_s, best_i, k, tie_rule, max_norm, finite, chunk_size)


def finish_topk(
    queries: Tensor,
    gallery,
    cand_s: Tensor,
    cand_i: Tensor,
    k: int,
    tie_rule: str,
    max_norm: float,
    finite: bool = True,
    chunk_size: int = 65536,
) -> tuple[Tensor, Tensor]:
    """Exact top-k from float32 candidates ``cand_i`` (Q, m) holding every gallery row whose
    float32 score is above ``cand_s``'s smallest (any float32 product: the bands allow for
    another summation order); rows the bands cannot decide are recomputed in float64."""
    total, dim = len(gallery), queries.shape[1]
    if k == 0 or len(queries) == 0:
        return torch.zeros(len(queries), 0, dtype=torch.float64), cand_i[:, :0]
    q_norm = queries.double().norm(dim=1)
    fast = dot_error_bound(unit_roundoff(queries), dim) + dot_error_bound(_U64, dim)
    band = 2.02 * fast * q_norm * max_norm + dim * 2.0**-126
    band64 = 4.04 * dot_error_bound(_U64, dim) * q_norm * max_norm + dim * 2.0**-126
    rows = _rows(gallery, cand_i.reshape(-1), None, torch.float64).view(*cand_i.shape, dim)
    s64 = torch.bmm(rows, queries.double().unsqueeze(-1)).squeeze(-1)  # (Q, m)
    s64, order = s64.sort(dim=1, descending=True, stable=True)
    ids = cand_i.gather(1, order)
    top = s64[:, : k + 1]
    gaps = top[:, :-1] - top[:, 1:]  # consecutive float64 scores of the top k + 1
    decided = (gaps > band64[:, None]).all(dim=1)  # no tie / near-tie in or at the top k
    if cand_i.shape[1] < total:  # rows left out lie at or below the float32 floor
        floor = cand_s.double().min(dim=1).values
        decided &= floor + band < s64[:, k - 1] - band64
    if not finite:
        decided[:] = False
    out_s, out_i = s64[:, :k].clone(), ids[:, :k].clone()
    for q in torch.nonzero(~decided).flatten().tolist():
        row = np.empty(total, dtype=np.float64)
        q64 = queries[q : q + 1].double().numpy()
        for lo in range(0, total, chunk_size):
            part = _rows(gallery, lo, min(lo + chunk_size, total), torch.float64).numpy()
            row[lo : lo + len(part)] = np.matmul(q64, part.T)[0]
        if tie_rule == 'published':
            best = np.argsort(row)[::-1][:k]
        else:
            best = np.argsort(-row, kind='stable')[:k]
        out_i[q] = torch.from_numpy(best.copy())
        out_s[q] = torch.from_numpy(row[best])
    return out_s, out_i


def _rows(gallery, start, stop, dtype) -> Tensor:
    """Gallery rows ``start:stop`` (or the rows ``start`` when ``stop`` is None) as a tensor
    of ``dtype``, from a tensor, an array (memory-mapped too) or a row reader."""
    if stop is None:
        part = gallery[start.numpy() if isinstance(gallery, np.ndarray) else start]
    else:
        part = gallery[start:stop]
    if not isinstance(part, Tensor):
        part = torch.from_numpy(np.array(part, dtype=np.float32))
    part = _float_scores(part.detach().cpu())
    return part.to(dtype)
