"""Image–text retrieval ranks without sorting, in bounded memory (DESIGN §5)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def _check(img_emb: Tensor, txt_emb: Tensor, txt_img: Tensor) -> None:
    if img_emb.dim() != 2 or txt_emb.dim() != 2 or img_emb.shape[1] != txt_emb.shape[1]:
        raise ValueError('retrieval_ranks: embeddings must be (N_img, D) and (N_txt, D), got '
                         f'{tuple(img_emb.shape)} and {tuple(txt_emb.shape)}.')
    if txt_img.shape != (txt_emb.shape[0],):
        raise ValueError(f'retrieval_ranks: txt_img must be (N_txt,) = ({txt_emb.shape[0]},), '
                         f'got {tuple(txt_img.shape)}.')
    if len(txt_img) and (int(txt_img.min()) < 0 or int(txt_img.max()) >= img_emb.shape[0]):
        raise ValueError('retrieval_ranks: txt_img must index rows of img_emb '
                         f'(0..{img_emb.shape[0] - 1}).')


@torch.no_grad()
def retrieval_ranks(img_emb: Tensor, txt_emb: Tensor, txt_img: Tensor,
                    chunk_size: int = 1024) -> tuple[Tensor, Tensor]:
    """0-based retrieval ranks both ways, with similarity = dot product.

    A rank is the number of candidates scored strictly higher than the ground truth,
    which equals the position of the ground truth in a descending argsort whenever
    there are no ties. Image-to-text takes the best rank among an image's captions,
    i.e. the rank of its highest-scored caption. Score rows are computed ``chunk_size``
    at a time, so memory stays at ``chunk_size × max(N_img, N_txt)`` scores.

    Args:
        img_emb: (N_img, D) image embeddings.
        txt_emb: (N_txt, D) caption embeddings.
        txt_img: (N_txt,) long, the image row of each caption; every image needs at least
            one caption.
        chunk_size: rows of the score matrix held at once.

    Returns:
        ``(i2t, t2i)``: (N_img,) and (N_txt,) long ranks.
    """
    _check(img_emb, txt_emb, txt_img)
    txt_img = txt_img.to(img_emb.device).long()
    i2t = torch.empty(img_emb.shape[0], dtype=torch.long, device=img_emb.device)
    t2i = torch.empty(txt_emb.shape[0], dtype=torch.long, device=img_emb.device)
    for start in range(0, img_emb.shape[0], chunk_size):
        rows = torch.arange(start, min(start + chunk_size, img_emb.shape[0]),
                            device=img_emb.device)
        scores = img_emb[rows] @ txt_emb.t()  # (c, N_txt)
        own = txt_img.unsqueeze(0) == rows.unsqueeze(1)
        if not bool(own.any(dim=1).all()):
            raise ValueError('retrieval_ranks: every image needs at least one caption.')
        best_own = scores.masked_fill(~own, -math.inf).amax(dim=1, keepdim=True)
        i2t[rows] = (scores > best_own).sum(dim=1)
    for start in range(0, txt_emb.shape[0], chunk_size):
        stop = min(start + chunk_size, txt_emb.shape[0])
        scores = txt_emb[start:stop] @ img_emb.t()  # (c, N_img)
        truth = scores.gather(1, txt_img[start:stop].unsqueeze(1))
        t2i[start:stop] = (scores > truth).sum(dim=1)
    return i2t, t2i


def summarize_ranks(i2t: Tensor, t2i: Tensor) -> dict[str, float]:
    """R@1/5/10 (percent), median and mean rank (1-based, medr floored) both ways, rSum."""
    out: dict[str, float] = {}
    for name, ranks in (('i2t', i2t), ('t2i', t2i)):
        ranks = ranks.cpu().numpy()
        for k in (1, 5, 10):
            out[f'{name}_R@{k}'] = 100.0 * float(np.mean(ranks < k))
        out[f'{name}_medr'] = float(np.floor(np.median(ranks))) + 1
        out[f'{name}_meanr'] = float(ranks.mean()) + 1
    out['rsum'] = sum(out[f'{d}_R@{k}'] for d in ('i2t', 't2i') for k in (1, 5, 10))
    return out
