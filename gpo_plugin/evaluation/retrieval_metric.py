"""Image–text retrieval metric (i2t / t2i recall, ranks, rSum; COCO 5K + 5-fold 1K)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from gpo_plugin.registry import METRICS

from .functional.retrieval_ranks import fold_summaries, retrieval_ranks, summarize_ranks

_COLUMNS = ('R@1', 'R@5', 'R@10', 'medr', 'meanr')


@METRICS.register_module()
class VSERetrievalMetric(BaseMetric):
    """Recall@1/5/10, median/mean rank both ways and rSum over all val/test pairs.

    Consumes the ``predict`` outputs of :class:`VSERetriever` (per sample ``img_emb``,
    ``txt_emb``, ``img_idx``, ``cap_idx``). Captions are grouped by ``img_idx``, so any
    number of captions per image works. With ``fold_size`` set (1000 for COCO
    ``testall``), the metrics are also computed on consecutive folds of ``fold_size``
    images and averaged, reported under ``fold{fold_size}_*`` keys, in the same pass.

    Args:
        fold_size: images per fold for the averaged fold result, or None.
        chunk_size: score-matrix rows held in memory at once.
        collect_device: ``'cpu'`` or ``'gpu'`` for distributed collection.
        prefix: key prefix. Defaults to ``'retrieval'``.
    """

    default_prefix = 'retrieval'

    def __init__(
        self,
        fold_size: int | None = None,
        chunk_size: int = 256,
        collect_device: str = 'cpu',
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.fold_size = fold_size
        self.chunk_size = chunk_size
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

    def compute_metrics(self, results: list) -> dict[str, float]:
        img_emb, txt_emb, txt_img = self.gather(results)
        fold_size = self.fold_size
        if fold_size and (len(img_emb) < fold_size or len(img_emb) % fold_size):
            MMLogger.get_current_instance().warning(
                f'VSERetrievalMetric: {len(img_emb)} images do not split into folds of '
                f'fold_size={fold_size}; the fold result is skipped.'
            )
            fold_size = None
        ranks = retrieval_ranks(img_emb, txt_emb, txt_img, self.chunk_size, fold_size)
        metrics = summarize_ranks(ranks.i2t, ranks.t2i)
        if fold_size:
            folds = fold_summaries(ranks, txt_img, fold_size)
            metrics.update({f'fold{fold_size}_{key}': value for key, value in folds.items()})
        MMLogger.get_current_instance().info(
            '\n' + format_retrieval_table(metrics, len(img_emb), len(txt_emb), fold_size)
        )
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


def format_retrieval_table(
    metrics: dict[str, float],
    num_images: int | None = None,
    num_captions: int | None = None,
    fold_size: int | None = None,
    prefix: str = '',
) -> str:
    """The papers' layout: one row per setting, i2t and t2i R@1/5/10, medr, meanr, rSum."""
    header = (
        f'{"setting":<22}| {"image-to-text":^38} | {"text-to-image":^38} | {"rSum":>6}\n'
        f'{"":<22}| '
        + ' '.join(f'{c:>7}' for c in _COLUMNS)
        + '  | '
        + ' '.join(f'{c:>7}' for c in _COLUMNS)
        + f'  | {"":>6}'
    )
    rows = []
    settings = [('', f'all ({num_images} img)' if num_images else 'all')]
    if fold_size:
        settings.append((f'fold{fold_size}_', f'{fold_size} img x folds (avg)'))
    for key_prefix, label in settings:
        keys = [f'{prefix}{key_prefix}{d}_{c}' for d in ('i2t', 't2i') for c in _COLUMNS]
        if not all(k in metrics for k in keys):
            continue
        values = [metrics[k] for k in keys]
        row = (
            f'{label:<22}| '
            + ' '.join(f'{v:7.1f}' for v in values[:5])
            + '  | '
            + ' '.join(f'{v:7.1f}' for v in values[5:])
            + f'  | {metrics[f"{prefix}{key_prefix}rsum"]:6.1f}'
        )
        rows.append(row)
    caption_note = f', {num_captions} captions' if num_captions else ''
    return f'Image-text retrieval{caption_note}\n' + header + '\n' + '\n'.join(rows)
