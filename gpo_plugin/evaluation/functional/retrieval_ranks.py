"""Image–text retrieval ranks without sorting, in bounded memory (docs/vse.md#evaluation-protocol)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor


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


@torch.no_grad()
def retrieval_ranks(
    img_emb: Tensor,
    txt_emb: Tensor,
    txt_img: Tensor,
    chunk_size: int = 256,
    fold_size: int | None = None,
) -> RetrievalRanks:
    """0-based retrieval ranks both ways, with similarity = dot product, in one pass.

    A rank is the number of candidates scored strictly higher than the ground truth,
    which equals the position of the ground truth in a descending argsort whenever
    there are no ties. Image-to-text takes the best rank among an image's captions,
    i.e. the rank of its highest-scored caption. The score matrix is computed once,
    ``chunk_size`` image rows at a time (memory ``chunk_size x N_txt`` scores), and
    each block serves the full-set ranks and, with ``fold_size``, the ranks within
    consecutive folds of ``fold_size`` images and their captions (COCO 1K).

    Args:
        img_emb: (N_img, D) image embeddings.
        txt_emb: (N_txt, D) caption embeddings.
        txt_img: (N_txt,) long, the image row of each caption; every image needs at least
            one caption.
        chunk_size: image rows of the score matrix held at once.
        fold_size: images per fold, dividing N_img; None for no folds.

    Returns:
        :class:`RetrievalRanks` of (N_img,) and (N_txt,) long tensors.
    """
    _check(img_emb, txt_emb, txt_img)
    device, n_img = img_emb.device, img_emb.shape[0]
    if fold_size is not None and (fold_size < 1 or n_img % fold_size):
        raise ValueError(f'retrieval_ranks: fold_size={fold_size} must divide N_img={n_img}.')
    # Captions sorted by image: each image's captions, and each fold's, are then a
    # contiguous column range of the score matrix.
    cap_img = txt_img.to(device).long()
    in_order = bool((cap_img[1:] >= cap_img[:-1]).all())
    order = None if in_order else torch.argsort(cap_img, stable=True)
    # Captions usually come grouped by image already: then no 100 MB gather is needed.
    txt, cap_img = (txt_emb, cap_img) if in_order else (txt_emb[order], cap_img[order])
    images = torch.arange(n_img, device=device)
    first = torch.searchsorted(cap_img, images)
    last = torch.searchsorted(cap_img, images, right=True)
    if bool((last == first).any()):
        raise ValueError('retrieval_ranks: every image needs at least one caption.')
    block = fold_size or n_img
    chunk_size = max(1, min(chunk_size, block))
    # Ground-truth score of each caption. Its own image is excluded from its count below,
    # so the rounding of this product against the matrix product cannot cost a rank.
    truth = torch.cat(
        [
            (txt[lo : lo + 4096] * img_emb[cap_img[lo : lo + 4096]]).sum(dim=1)
            for lo in range(0, len(txt), 4096)
        ]
    )  # in slices that stay in cache; each row's sum is the same as in one piece
    # Counts are summed in int32 from a uint8 view of the comparison: reducing booleans
    # into int64 costs 15x more on CPU, and into int32 7x more along rows.
    i2t = torch.empty(n_img, dtype=torch.int32, device=device)
    t2i = torch.zeros(len(txt), dtype=torch.int32, device=device)
    fold_i2t = torch.empty_like(i2t) if fold_size else None
    fold_t2i = torch.zeros_like(t2i) if fold_size else None
    for lo in range(0, n_img, block):
        fold_cols = slice(int(first[lo]), int(last[lo + block - 1]))
        for start in range(lo, lo + block, chunk_size):
            stop = min(start + chunk_size, lo + block)
            scores = img_emb[start:stop] @ txt.t()  # (c, N_txt)
            own_col = torch.arange(int(first[start]), int(last[stop - 1]), device=device)
            own_row = cap_img[own_col] - start
            own = scores[own_row, own_col]
            best_own = torch.full((stop - start,), -math.inf, dtype=own.dtype, device=device)
            best_own = best_own.scatter_reduce(0, own_row, own, 'amax').unsqueeze(1)
            beats_own = scores > best_own
            i2t[start:stop] = _count(beats_own, dim=1)
            above = _count(scores > truth, dim=0)
            above.index_add_(0, own_col, -(own > truth[own_col]).int())
            t2i += above
            if fold_size:
                fold_i2t[start:stop] = _count(beats_own[:, fold_cols], dim=1)
                # Every row of this block lies in the fold: its column counts are the fold's.
                fold_t2i[fold_cols] += above[fold_cols]
    if not in_order:
        unsort = torch.empty_like(order)
        unsort[order] = torch.arange(len(order), device=device)
        t2i = t2i[unsort]
        fold_t2i = fold_t2i[unsort] if fold_size else None
    fold_i2t = fold_i2t.long() if fold_size else None
    fold_t2i = fold_t2i.long() if fold_size else None
    return RetrievalRanks(i2t.long(), t2i.long(), fold_i2t, fold_t2i)


def _count(mask: Tensor, dim: int) -> Tensor:
    """int32 number of True entries along ``dim`` of a boolean matrix."""
    return mask.view(torch.uint8).sum(dim=dim, dtype=torch.int32)


def fold_summaries(ranks: RetrievalRanks, txt_img: Tensor, fold_size: int) -> dict[str, float]:
    """Metrics of :func:`summarize_ranks` per fold, averaged over the folds."""
    num_folds = len(ranks.fold_i2t) // fold_size
    txt_fold = txt_img.to(ranks.fold_t2i.device) // fold_size
    per_fold = [
        summarize_ranks(
            ranks.fold_i2t[f * fold_size : (f + 1) * fold_size], ranks.fold_t2i[txt_fold == f]
        )
        for f in range(num_folds)
    ]
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
