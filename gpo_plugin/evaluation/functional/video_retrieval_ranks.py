"""HGR's video–text retrieval protocol: ranks with several ground truths per query
(docs/vse.md#video-protocol).

Unlike the image protocol (float64 scores, :mod:`.retrieval_ranks`), the scores here stay
float32, the precision of HGR's model outputs that its ``eval_q2m`` ranks."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .retrieval_ranks import check_tie_rule  # the same three rules as the image protocol


@torch.no_grad()
def video_scores(vid_emb: Tensor, txt_emb: Tensor, chunk_size: int = 256) -> Tensor:
    """The (N_vid, N_cap) float32 similarity matrix, ``chunk_size`` video rows at a time."""
    vid, txt = vid_emb.float(), txt_emb.float()
    return torch.cat([vid[lo : lo + chunk_size] @ txt.t() for lo in range(0, len(vid), chunk_size)])


@torch.no_grad()
def multi_gt_ranks(
    scores: Tensor,
    gt_query: Tensor,
    gt_memory: Tensor,
    tie_rule: str = 'published',
    chunk_size: int = 1024,
) -> Tensor:
    """0-based rank of each query's best-placed ground truth among all memories.

    The published rank (HGR's ``eval_q2m``) is the smallest position of a ground truth in
    ``np.argsort(-scores[q])``. It equals the number of memories scored strictly higher
    than the query's best ground-truth score unless another non-ground-truth memory ties
    with that score; only those rows are sorted, with that same ``np.argsort`` call on the
    same float32 scores, so the result is the published code's on this machine.

    Args:
        scores: (Q, M) float similarities (a transposed view is fine).
        gt_query, gt_memory: (P,) long, the ground-truth pairs; every query needs one.
        tie_rule: ``'published'`` (argsort position, default), ``'optimistic'`` (ties
            counted in the query's favour: only strictly higher memories) or
            ``'pessimistic'`` (every tied non-ground-truth memory placed ahead).
        chunk_size: query rows compared at a time.

    Returns:
        (Q,) long ranks.
    """
    check_tie_rule(tie_rule)
    num_q = scores.shape[0]
    gt_query, gt_memory = gt_query.long(), gt_memory.long()
    if not bool(torch.isfinite(scores).all()):
        q, m = (int(i) for i in torch.nonzero(~torch.isfinite(scores))[0])
        raise ValueError(
            f'multi_gt_ranks: score [{q}, {m}] is {float(scores[q, m])}; embeddings must be '
            'finite (a NaN embedding has no rank).'
        )
    has_gt = torch.zeros(num_q, dtype=torch.bool).index_fill_(0, gt_query, True)
    if not bool(has_gt.all()):
        raise ValueError(
            f'multi_gt_ranks: query {int(torch.argmin(has_gt.int()))} has no ground truth.'
        )
    gt_scores = scores[gt_query, gt_memory]
    best = torch.full((num_q,), -torch.inf, dtype=scores.dtype)
    best = best.scatter_reduce(0, gt_query, gt_scores, 'amax')
    gt_at_best = torch.zeros(num_q, dtype=torch.long)
    gt_at_best.index_add_(0, gt_query, (gt_scores == best[gt_query]).long())
    ranks = torch.empty(num_q, dtype=torch.long)
    queries, by_query = torch.arange(num_q), None
    for lo in range(0, num_q, chunk_size):
        block, top = scores[lo : lo + chunk_size], best[lo : lo + chunk_size, None]
        higher = (block > top).sum(dim=1)
        tied_other = (block == top).sum(dim=1) - gt_at_best[lo : lo + chunk_size]
        ranks[lo : lo + chunk_size] = higher + tied_other if tie_rule == 'pessimistic' else higher
        if tie_rule == 'published':
            tied = (torch.nonzero(tied_other > 0).flatten() + lo).tolist()
            if tied and by_query is None:  # each query's ground truths, contiguous
                order = torch.argsort(gt_query, stable=True)
                by_query = (gt_memory[order], torch.searchsorted(gt_query[order], queries))
            for q in tied:
                start = int(by_query[1][q])
                stop = int(by_query[1][q + 1]) if q + 1 < num_q else len(gt_query)
                ranks[q] = argsort_rank(scores[q], by_query[0][start:stop])
    return ranks


def argsort_rank(row: Tensor, gts: Tensor) -> int:
    """Smallest position of ``gts`` in ``np.argsort(-row)`` (the published computation)."""
    order = np.argsort(-np.ascontiguousarray(row.cpu().numpy()))
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    return int(position[gts.cpu().numpy()].min())


def video_retrieval_ranks(
    vid_emb: Tensor,
    txt_emb: Tensor,
    pair_vid: Tensor,
    pair_txt: Tensor,
    tie_rule: str = 'published',
    chunk_size: int = 256,
) -> tuple[Tensor, Tensor]:
    """Video-to-text and text-to-video ranks of HGR's protocol.

    Captions are distinct texts: a caption is ground truth for every video it describes,
    and a video for each of its captions.

    Args:
        vid_emb: (N_vid, D) video embeddings.
        txt_emb: (N_cap, D) embeddings of the distinct caption texts.
        pair_vid, pair_txt: (P,) long, the (video, caption) ground-truth pairs.
        tie_rule: see :func:`multi_gt_ranks`.
        chunk_size: rows of the score product at a time.

    Returns:
        ``(v2t, t2v)``: (N_vid,) and (N_cap,) long 0-based ranks.
    """
    if vid_emb.dim() != 2 or txt_emb.dim() != 2 or vid_emb.shape[1] != txt_emb.shape[1]:
        raise ValueError(
            'video_retrieval_ranks: embeddings must be (N_vid, D) and (N_cap, D), got '
            f'{tuple(vid_emb.shape)} and {tuple(txt_emb.shape)}.'
        )
    scores = video_scores(vid_emb.cpu(), txt_emb.cpu(), chunk_size)
    v2t = multi_gt_ranks(scores, pair_vid, pair_txt, tie_rule)
    t2v = multi_gt_ranks(scores.T, pair_txt, pair_vid, tie_rule)
    return v2t, t2v


def summarize_video_ranks(v2t: Tensor, t2v: Tensor) -> dict[str, float]:
    """R@1/5/10 (percent), MedR and MeanR (1-based; the median not floored, as HGR's
    ``eval_q2m``) both ways, and RSUM."""
    out: dict[str, float] = {}
    for name, ranks in (('v2t', v2t), ('t2v', t2v)):
        ranks = ranks.cpu().numpy()
        for k in (1, 5, 10):
            out[f'{name}_R@{k}'] = 100.0 * int(np.count_nonzero(ranks < k)) / len(ranks)
        out[f'{name}_medr'] = float(np.median(ranks)) + 1
        out[f'{name}_meanr'] = float(ranks.mean()) + 1
    out['rsum'] = sum(out[f'{d}_R@{k}'] for d in ('v2t', 't2v') for k in (1, 5, 10))
    return out
