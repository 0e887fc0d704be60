"""Image–text retrieval metric (i2t / t2i recall, ranks, rSum; COCO 5K + 5-fold 1K)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from gpo_plugin.registry import METRICS

from .functional.retrieval_ranks import (
    check_tie_rule,
    per_fold_summaries,
    retrieval_ranks,
    summarize_ranks,
)

_COLUMNS = ('R@1', 'R@5', 'R@10', 'medr', 'meanr')


@METRICS.register_module()
class VSERetrievalMetric(BaseMetric):
    """Recall@1/5/10, median/mean rank both ways and rSum over all val/test pairs.

    Consumes the ``predict`` outputs of :class:`VSERetriever` (per sample ``img_emb``,
    ``txt_emb``, ``img_idx``, ``cap_idx``). Captions are grouped by ``img_idx``, so any
    number of captions per image works. With ``fold_size`` set (1000 for COCO
    ``testall``), the metrics are also computed on consecutive folds of ``fold_size``
    images and averaged, reported under ``fold{fold_size}_*`` keys, in the same pass.
    Each fold's own numbers come under ``fold{fold_size}_{f}_*`` (fold ``f`` = 0, 1, ...),
    their standard deviation over the folds under ``fold{fold_size}_std_*``.

    Ties between a ground truth and another candidate are resolved by ``tie_rule``, which
    the results carry under the ``tie_rule`` key (docs/vse.md#ties), all on the published
    float64 scores of the float32 embeddings: ``'published'`` (the position in
    ``np.argsort(scores)[::-1]``, as the published VSE evaluation code),
    ``'optimistic'`` (strictly higher scores only) or ``'pessimistic'`` (higher or equal).

    Args:
        fold_size: images per fold for the averaged fold result, or None.
        chunk_size: score-matrix rows held in memory at once.
        tie_rule: ``'published'`` (default), ``'optimistic'`` or ``'pessimistic'``.
        collect_device: ``'cpu'`` or ``'gpu'`` for distributed collection.
        prefix: key prefix. Defaults to ``'retrieval'``.
    """

    default_prefix = 'retrieval'

    def __init__(
        self,
        fold_size: int | None = None,
        chunk_size: int = 256,
        tie_rule: str = 'published',
        collect_device: str = 'cpu',
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.fold_size = fold_size
        self.chunk_size = chunk_size
        self.tie_rule = check_tie_rule(tie_rule)
        # What the last compute_metrics saw, for tools/test.py (--out, --save-sims).
        self.last_run: dict = {}
        self.log_table = True  # tools/test.py prints the table itself, once
        self._seen_images: set[int] = set()

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        if not self.results:
            self._seen_images.clear()
        for sample in data_samples:
            img_idx = int(sample['img_idx'])
            # Each image's embedding is kept once (it repeats for each of its captions).
            img_emb = None
            if img_idx not in self._seen_images:
                self._seen_images.add(img_idx)
                img_emb = sample['img_emb'].detach().float().cpu()
            self.results.append(
                (img_idx, int(sample['cap_idx']), img_emb, sample['txt_emb'].detach().float().cpu())
            )

    def compute_metrics(self, results: list) -> dict:
        img_emb, txt_emb, txt_img = self.gather(results)
        return self.evaluate_embeddings(img_emb, txt_emb, txt_img)

    def evaluate_embeddings(self, img_emb, txt_emb, txt_img) -> dict:
        """The metrics of (N_img, D) images and (N_txt, D) captions of image rows ``txt_img``."""
        fold_size, skipped = self.fold_size, None
        if fold_size and (len(img_emb) < fold_size or len(img_emb) % fold_size):
            skipped = f'{len(img_emb)} images do not split into folds of fold_size={fold_size}'
            MMLogger.get_current_instance().warning(
                f'VSERetrievalMetric: {skipped}; the fold result is skipped.'
            )
            fold_size = None
        ranks = retrieval_ranks(
            img_emb, txt_emb, txt_img, self.chunk_size, fold_size, tie_rule=self.tie_rule
        )
        metrics = fold_metrics(ranks, txt_img, fold_size)
        metrics['tie_rule'] = self.tie_rule
        self.last_run = dict(
            img_emb=img_emb,
            txt_emb=txt_emb,
            txt_img=txt_img,
            ranks=ranks,
            fold_size=fold_size,
            fold_skipped=skipped,
        )
        table = format_retrieval_table(
            metrics, len(img_emb), len(txt_emb), fold_size, fold_skipped=skipped
        )
        if self.log_table:
            MMLogger.get_current_instance().info('\n' + table)
        return metrics

    @staticmethod
    def gather(results: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Deduplicate into (N_img, D) images, (N_txt, D) captions and (N_txt,) image rows."""
        images: dict[int, torch.Tensor] = {}
        captions: dict[int, tuple[int, torch.Tensor]] = {}
        for img_idx, cap_idx, img_emb, txt_emb in results:
            if img_emb is not None:
                images.setdefault(img_idx, img_emb)
            captions.setdefault(cap_idx, (img_idx, txt_emb))
        image_keys = sorted(images)
        row_of = {key: row for row, key in enumerate(image_keys)}
        caption_keys = sorted(captions)
        img_emb = torch.stack([images[k] for k in image_keys])
        txt_emb = torch.stack([captions[k][1] for k in caption_keys])
        txt_img = torch.tensor([row_of[captions[k][0]] for k in caption_keys], dtype=torch.long)
        return img_emb, txt_emb, txt_img


def fold_metrics(ranks, txt_img, fold_size: int | None) -> dict[str, float]:
    """Full-set metrics, plus with folds each fold's, their mean and their std (population)."""
    metrics = summarize_ranks(ranks.i2t, ranks.t2i)
    if not fold_size:
        return metrics
    per_fold = per_fold_summaries(ranks, txt_img, fold_size)
    for key in per_fold[0]:
        values = [m[key] for m in per_fold]
        metrics[f'fold{fold_size}_{key}'] = float(np.mean(values))
        metrics[f'fold{fold_size}_std_{key}'] = float(np.std(values))
        for f, value in enumerate(values):
            metrics[f'fold{fold_size}_{f}_{key}'] = value
    return metrics


def format_retrieval_table(
    metrics: dict,
    num_images: int | None = None,
    num_captions: int | None = None,
    fold_size: int | None = None,
    prefix: str = '',
    fold_skipped: str | None = None,
) -> str:
    """The papers' layout: one row per setting (the full set, each fold, the fold mean and
    std), i2t and t2i R@1/5/10, medr, meanr, rSum; then the tie rule and the protocols run."""
    header = (
        f'{"setting":<22}| {"image-to-text":^38} | {"text-to-image":^38} | {"rSum":>6}\n'
        f'{"":<22}| '
        + ' '.join(f'{c:>7}' for c in _COLUMNS)
        + '  | '
        + ' '.join(f'{c:>7}' for c in _COLUMNS)
        + f'  | {"":>6}'
    )
    settings = [('', f'all ({num_images} img)' if num_images else 'all')]
    num_folds = 0
    if fold_size:
        while f'{prefix}fold{fold_size}_{num_folds}_rsum' in metrics:
            settings.append(
                (f'fold{fold_size}_{num_folds}_', f'fold {num_folds} ({fold_size} img)')
            )
            num_folds += 1
        settings.append((f'fold{fold_size}_', f'{fold_size} img, fold mean'))
        settings.append((f'fold{fold_size}_std_', f'{fold_size} img, fold std'))
    rows = [row for key, label in settings if (row := _table_row(metrics, prefix + key, label))]
    caption_note = f', {num_captions} captions' if num_captions else ''
    notes = []
    if f'{prefix}tie_rule' in metrics:
        notes.append(f'ties: {metrics[f"{prefix}tie_rule"]} rule')
    protocols = ['full set']
    if fold_size and num_folds:
        protocols.append(f'{num_folds} folds of {fold_size} images')
    notes.append('protocols run: ' + ', '.join(protocols))
    if fold_skipped:
        notes.append(f'fold protocol not run: {fold_skipped}')
    return (
        f'Image-text retrieval{caption_note}\n'
        + header
        + '\n'
        + '\n'.join(rows)
        + '\n'
        + '; '.join(notes)
    )


def _table_row(metrics: dict, key_prefix: str, label: str) -> str | None:
    keys = [f'{key_prefix}{d}_{c}' for d in ('i2t', 't2i') for c in _COLUMNS]
    if not all(k in metrics for k in keys + [f'{key_prefix}rsum']):
        return None
    values = [metrics[k] for k in keys]
    return (
        f'{label:<22}| '
        + ' '.join(f'{v:7.1f}' for v in values[:5])
        + '  | '
        + ' '.join(f'{v:7.1f}' for v in values[5:])
        + f'  | {metrics[f"{key_prefix}rsum"]:6.1f}'
    )
