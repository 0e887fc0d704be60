"""Crisscrossed Captions (CxC) recalls on COCO 5K: image-text, image-image, text-text.

CxC (Parekh et al., 2021) adds human similarity ratings to the COCO 5K test split. The
published VSE evaluation (``evalrank(cxc=True)``) scores it as follows, and so does
:func:`cxc_recalls`:

- i2t / t2i: every image (caption) is a query; its positives are the captions (images) that
  ``cxc_it.json`` lists for it and that are in the split; a query without any counts as a miss.
- i2i: similarity with the diagonal set to 0 (the query stays a candidate, at score 0); the
  positives are the images rated >= 2.5; queries without a positive are skipped.
- t2t: the same with captions; the positives are the other captions of the same image plus
  the captions rated >= 3.0.

The scores are the published ones: float64 products of the float32 embeddings (the published
code holds them in float64 arrays). The rank of a query is the best position of its positives
in the descending order of the scores, ties resolved by the tie rule
(:mod:`.functional.retrieval_ranks`: ``np.argsort`` of the float64 row where the best positive
is tied, a count elsewhere).
"""

from __future__ import annotations

import json
import os.path as osp

import numpy as np
import torch
from torch import Tensor

from .functional.retrieval_ranks import check_tie_rule, published_scores, rule_position

I2I_THRESHOLD = 2.5  # CxC paper: an image pair rated >= 2.5 is a positive
T2T_THRESHOLD = 3.0  # and a caption pair rated >= 3.0
FILES = ('testall_ids.txt', 'testall_capids.txt', 'cxc_it.json', 'cxc_i2i.json', 'cxc_t2t.json')


class CxCAnnotationError(ValueError):
    """The CxC annotation folder is missing a file or does not match the embeddings."""


def load_cxc_annotations(annot_dir: str, num_images: int, num_captions: int) -> dict:
    """Image ids, caption ids and the three rating files, checked against the sizes."""
    missing = [f for f in FILES if not osp.isfile(osp.join(annot_dir, f))]
    if missing:
        raise CxCAnnotationError(
            f'CxC annotations: {annot_dir} lacks {", ".join(missing)} (the published '
            "`cxc_annots` folder holds all of {', '.join(FILES)})."
        )
    with open(osp.join(annot_dir, 'testall_ids.txt')) as f:
        img_lines = [line.strip() for line in f if line.strip()]
    with open(osp.join(annot_dir, 'testall_capids.txt')) as f:
        cap_ids = [line.strip() for line in f if line.strip()]
    if len(cap_ids) != num_captions or len(img_lines) != num_captions:
        raise CxCAnnotationError(
            f'CxC annotations: {annot_dir}/testall_ids.txt and testall_capids.txt must have one '
            f'line per caption ({num_captions}), got {len(img_lines)} and {len(cap_ids)}.'
        )
    if num_captions != 5 * num_images:
        raise CxCAnnotationError(
            f'CxC needs the COCO 5K layout, 5 captions per image in image order; got '
            f'{num_images} images and {num_captions} captions.'
        )
    out = dict(img_ids=img_lines[::5], cap_ids=cap_ids)
    for key in ('cxc_it', 'cxc_i2i', 'cxc_t2t'):
        path = osp.join(annot_dir, f'{key}.json')
        try:
            with open(path) as f:
                out[key] = json.load(f)
        except json.JSONDecodeError as err:
            raise CxCAnnotationError(f'CxC annotations: {path} is not JSON ({err}).') from None
    return out


@torch.no_grad()
def cxc_recalls(
    img_emb: Tensor, cap_emb: Tensor, annot_dir: str, tie_rule: str = 'published'
) -> dict[str, float]:
    """CxC R@1/5/10 (percent) both ways and within each modality.

    Args:
        img_emb: (N, D) image embeddings, in the order of ``testall_ids.txt`` (every 5th line).
        cap_emb: (5N, D) caption embeddings, in the order of ``testall_capids.txt``.
        annot_dir: folder with the CxC files (``testall_ids.txt``, ``testall_capids.txt``,
            ``cxc_it.json``, ``cxc_i2i.json``, ``cxc_t2t.json``).
        tie_rule: ``'published'`` (argsort order), ``'optimistic'`` or ``'pessimistic'``.

    Returns:
        ``{'i2t_R@1': ..., ..., 't2t_R@10': ...}`` (12 keys).
    """
    check_tie_rule(tie_rule)
    img = torch.as_tensor(img_emb).float().cpu()
    cap = torch.as_tensor(cap_emb).float().cpu()
    ann = load_cxc_annotations(annot_dir, len(img), len(cap))
    img_ids, cap_ids = ann['img_ids'], ann['cap_ids']
    img_row = {key: row for row, key in enumerate(img_ids)}
    cap_row = {key: row for row, key in enumerate(cap_ids)}
    i2t_pos = [_inter_positives(ann['cxc_it']['i2t'], q, cap_row, 'i2t') for q in img_ids]
    t2i_pos = [_inter_positives(ann['cxc_it']['t2i'], q, img_row, 't2i') for q in cap_ids]
    i2i_pos = [_rated(ann['cxc_i2i'], q, img_row, I2I_THRESHOLD) for q in img_ids]
    t2t_pos = [
        np.concatenate([_same_image(row), _rated(ann['cxc_t2t'], q, cap_row, T2T_THRESHOLD)])
        for row, q in enumerate(cap_ids)
    ]
    out = {}
    for name, queries, gallery, positives, intra in (
        ('i2t', img, cap, i2t_pos, False),
        ('t2i', cap, img, t2i_pos, False),
        ('i2i', img, img, i2i_pos, True),
        ('t2t', cap, cap, t2t_pos, True),
    ):
        # i2i skips images without a rated positive; i2t / t2i count them as misses.
        keep = [q for q, p in enumerate(positives) if len(p) or not intra or name == 't2t']
        ranks = _ranks(queries, gallery, positives, keep, intra, tie_rule)
        for k in (1, 5, 10):
            out[f'{name}_R@{k}'] = 100.0 * float(np.count_nonzero(ranks < k)) / len(ranks)
    return out


def _inter_positives(annot: dict, query: str, rows: dict, direction: str) -> np.ndarray:
    if query not in annot:
        raise CxCAnnotationError(
            f'CxC annotations: cxc_it.json["{direction}"] has no entry {query}.'
        )
    return np.array([rows[str(e[0])] for e in annot[query] if str(e[0]) in rows], dtype=np.int64)


def _rated(annot: dict, query: str, rows: dict, threshold: float) -> np.ndarray:
    items = [str(e[0]) for e in annot.get(query, []) if e[1] >= threshold]
    unknown = [i for i in items if i not in rows]
    if unknown:
        raise CxCAnnotationError(
            f'CxC annotations: {query} is rated against ids not in the split: {unknown[:3]}.'
        )
    return np.array([rows[i] for i in items], dtype=np.int64)


def _same_image(row: int) -> np.ndarray:
    return np.array(
        [c for c in range(row - row % 5, row - row % 5 + 5) if c != row], dtype=np.int64
    )


def _ranks(queries, gallery, positives, keep, intra, tie_rule, chunk: int = 256) -> np.ndarray:
    """Best position of each kept query's positives; inf without positives (a miss)."""
    ranks = []
    for lo in range(0, len(keep), chunk):
        rows = torch.tensor(keep[lo : lo + chunk], dtype=torch.long)
        scores = published_scores(queries[rows], gallery)
        if intra:  # the published code zeroes the self-similarity; the item stays a candidate
            scores[np.arange(len(rows)), rows.numpy()] = 0
        for row, q in zip(scores, rows.tolist(), strict=True):
            ranks.append(_rank(row, positives[q], tie_rule))
    return np.array(ranks, dtype=np.float64)


def _rank(row: np.ndarray, targets: np.ndarray, tie_rule: str) -> float:
    if not len(targets):
        return np.inf
    best = row[targets].max()
    if tie_rule == 'published' and (np.isnan(best) or np.isnan(row).any()):
        return rule_position(row, targets, tie_rule)
    if tie_rule == 'published' and np.count_nonzero(row == best) > 1:
        return rule_position(row, targets, tie_rule)
    if tie_rule == 'pessimistic':
        return rule_position(row, targets, tie_rule)
    return int(np.count_nonzero(row > best))
