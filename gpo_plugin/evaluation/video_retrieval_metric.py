"""Video–text retrieval metric with HGR's protocol (docs/vse.md#video-protocol)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from gpo_plugin.registry import METRICS

from .functional.retrieval_ranks import check_tie_rule
from .functional.video_retrieval_ranks import summarize_video_ranks, video_retrieval_ranks

_COLUMNS = ('R@1', 'R@5', 'R@10', 'medr', 'meanr')


@METRICS.register_module()
class VideoRetrievalMetric(BaseMetric):
    """T->V and V->T R@1/5/10, MedR, MeanR and RSUM over distinct caption texts.

    Consumes the ``predict`` outputs of :class:`VSERetriever` on a
    :class:`VideoCaptionDataset` (one sample per (video, caption) pair, ``img_idx`` the
    video, ``cap_idx`` the id of the caption's text). Each video and each distinct text is
    embedded once (the first occurrence kept); every pair seen is a ground truth, so a
    text shared by several videos retrieves any of them (HGR's ``evaluate``).

    Args:
        tie_rule: ``'published'`` (position in a descending ``np.argsort``, HGR's
            ``eval_q2m``; default), ``'optimistic'`` or ``'pessimistic'``
            (:func:`~gpo_plugin.evaluation.functional.video_retrieval_ranks.multi_gt_ranks`).
        chunk_size: video rows of the score product at a time.
        collect_device: ``'cpu'`` or ``'gpu'`` for distributed collection.
        prefix: key prefix. Defaults to ``'retrieval'`` (``retrieval/rsum`` picks the
            best checkpoint, as for images).
    """

    default_prefix = 'retrieval'

    def __init__(
        self,
        tie_rule: str = 'published',
        chunk_size: int = 256,
        collect_device: str = 'cpu',
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.tie_rule = check_tie_rule(tie_rule)
        self.chunk_size = chunk_size
        self._seen: tuple[set[int], set[int]] = (set(), set())

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        if not self.results:
            self._seen[0].clear()
            self._seen[1].clear()
        videos, texts = self._seen
        for sample in data_samples:
            vid, cap = int(sample['img_idx']), int(sample['cap_idx'])
            vid_emb = txt_emb = None
            if vid not in videos:
                videos.add(vid)
                vid_emb = sample['img_emb'].detach().float().cpu()
            if cap not in texts:
                texts.add(cap)
                txt_emb = sample['txt_emb'].detach().float().cpu()
            self.results.append((vid, cap, vid_emb, txt_emb))

    def compute_metrics(self, results: list) -> dict[str, float]:
        vid_emb, txt_emb, pair_vid, pair_txt = self.gather(results)
        v2t, t2v = video_retrieval_ranks(
            vid_emb, txt_emb, pair_vid, pair_txt, self.tie_rule, self.chunk_size
        )
        metrics = summarize_video_ranks(v2t, t2v)
        MMLogger.get_current_instance().info(
            '\n' + format_video_table(metrics, len(vid_emb), len(txt_emb), self.tie_rule)
        )
        return metrics

    @staticmethod
    def gather(results: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N_vid, D) videos and (N_cap, D) texts in id order, and the (P,) ground-truth
        pairs as rows of those two."""
        videos: dict[int, torch.Tensor] = {}
        texts: dict[int, torch.Tensor] = {}
        pairs = set()
        for vid, cap, vid_emb, txt_emb in results:
            if vid_emb is not None:
                videos.setdefault(vid, vid_emb)
            if txt_emb is not None:
                texts.setdefault(cap, txt_emb)
            pairs.add((vid, cap))
        vid_row = {key: row for row, key in enumerate(sorted(videos))}
        txt_row = {key: row for row, key in enumerate(sorted(texts))}
        pairs = sorted(pairs)
        return (
            torch.stack([videos[k] for k in sorted(videos)]),
            torch.stack([texts[k] for k in sorted(texts)]),
            torch.tensor([vid_row[v] for v, _ in pairs], dtype=torch.long),
            torch.tensor([txt_row[c] for _, c in pairs], dtype=torch.long),
        )


def format_video_table(
    metrics: dict[str, float],
    num_videos: int | None = None,
    num_texts: int | None = None,
    tie_rule: str = 'published',
    prefix: str = '',
) -> str:
    """HGR's layout: T->V and V->T R@1/5/10, MedR, MeanR, then RSUM."""
    head = ' '.join(f'{c:>7}' for c in _COLUMNS)
    sizes = f'{num_videos} videos, {num_texts} distinct captions, ' if num_videos else ''
    lines = [
        f'Video-text retrieval ({sizes}ties: {tie_rule})',
        f'{"text-to-video":^39} | {"video-to-text":^39} | {"RSUM":>6}',
        f'{head}  | {head}  |',
    ]
    values = [metrics[f'{prefix}{d}_{c}'] for d in ('t2v', 'v2t') for c in _COLUMNS]
    lines.append(
        ' '.join(f'{v:7.1f}' for v in values[:5])
        + '  | '
        + ' '.join(f'{v:7.1f}' for v in values[5:])
        + f'  | {metrics[f"{prefix}rsum"]:6.1f}'
    )
    return '\n'.join(lines)
