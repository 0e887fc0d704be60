"""Reference image–text retrieval evaluation, written directly from docs/vse.md#evaluation-protocol.

One Python iteration per image and per caption, each with a full argsort, the way
the published VSE evaluation code does it, on the scores it computes: its ``encode_data``
copies the float32 embeddings into float64 arrays (``np.zeros``), and ``compute_sim``
multiplies those, so the scores are float64. For tests and benchmarks only.
"""

from __future__ import annotations

import numpy as np


def reference_ranks(
    img_emb: np.ndarray, txt_emb: np.ndarray, txt_img: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """0-based ranks by argsort of score rows, as the published evaluation does.

    The scores: float64 copies of the (float32) embeddings, multiplied once (the published
    ``compute_sim``). i2t: for each image, sort its row descending, take the best position
    of any of its captions; t2i: for each caption, sort its column, take the position of
    its image.
    """
    n_img, n_txt = len(img_emb), len(txt_emb)
    images = np.zeros(img_emb.shape)  # float64, as the published encode_data allocates
    captions = np.zeros(txt_emb.shape)
    images[:] = img_emb
    captions[:] = txt_emb
    sims = np.matmul(images, captions.T)
    i2t = np.zeros(n_img, dtype=np.int64)
    for i in range(n_img):
        order = np.argsort(sims[i])[::-1]
        own = np.flatnonzero(txt_img == i)
        i2t[i] = min(np.where(order == c)[0][0] for c in own)
    t2i = np.zeros(n_txt, dtype=np.int64)
    cols = sims.T
    for j in range(n_txt):
        order = np.argsort(cols[j])[::-1]
        t2i[j] = np.where(order == txt_img[j])[0][0]
    return i2t, t2i


def reference_summary(i2t: np.ndarray, t2i: np.ndarray) -> dict[str, float]:
    """R@1/5/10 in percent, floor(median)+1, mean+1, rSum, as the VSE papers report."""
    out = {}
    for name, ranks in (('i2t', i2t), ('t2i', t2i)):
        for k in (1, 5, 10):
            out[f'{name}_R@{k}'] = 100.0 * len(np.where(ranks < k)[0]) / len(ranks)
        out[f'{name}_medr'] = np.floor(np.median(ranks)) + 1
        out[f'{name}_meanr'] = ranks.mean() + 1
    out['rsum'] = sum(out[f'{d}_R@{k}'] for d in ('i2t', 't2i') for k in (1, 5, 10))
    return out


def reference_evaluation(
    img_emb: np.ndarray, txt_emb: np.ndarray, txt_img: np.ndarray, fold_size: int | None = None
) -> dict[str, float]:
    """Full-set metrics, plus fold-averaged ones (``fold{fold_size}_*``) if asked."""
    result = reference_summary(*reference_ranks(img_emb, txt_emb, txt_img))
    if fold_size:
        folds = []
        for f in range(len(img_emb) // fold_size):
            lo, hi = f * fold_size, (f + 1) * fold_size
            keep = (txt_img >= lo) & (txt_img < hi)
            ranks = reference_ranks(img_emb[lo:hi], txt_emb[keep], txt_img[keep] - lo)
            folds.append(reference_summary(*ranks))
        for key in folds[0]:
            result[f'fold{fold_size}_{key}'] = float(np.mean([m[key] for m in folds]))
    return result
