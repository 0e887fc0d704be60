"""CxC recalls as an mmengine metric (config ``test_evaluator``)."""

from __future__ import annotations

from mmengine.logging import MMLogger

from gpo_plugin.registry import METRICS

from .cxc import cxc_recalls
from .retrieval_metric import VSERetrievalMetric


@METRICS.register_module()
class VSECxCMetric(VSERetrievalMetric):
    """Crisscrossed Captions R@1/5/10 (i2t, t2i, i2i, t2t) on COCO 5K (:func:`cxc_recalls`).

    Consumes the same ``predict`` outputs as :class:`VSERetrievalMetric`; images and captions
    are ordered by ``img_idx`` / ``cap_idx``, which must follow ``testall_ids.txt`` /
    ``testall_capids.txt`` (the published COCO ``testall`` order, 5 captions per image).
    Use it beside the retrieval metric, e.g.
    ``test_evaluator = [dict(type='VSERetrievalMetric', fold_size=1000),
    dict(type='VSECxCMetric', annot_dir='data/coco/cxc_annots')]``.

    Args:
        annot_dir: folder with the CxC annotation files.
        tie_rule: ``'published'`` (default), ``'optimistic'`` or ``'pessimistic'``.
        collect_device: ``'cpu'`` or ``'gpu'`` for distributed collection.
        prefix: key prefix. Defaults to ``'cxc'``.
    """

    default_prefix = 'cxc'

    def __init__(
        self,
        annot_dir: str,
        tie_rule: str = 'published',
        collect_device: str = 'cpu',
        prefix: str | None = None,
    ) -> None:
        super().__init__(tie_rule=tie_rule, collect_device=collect_device, prefix=prefix)
        self.annot_dir = annot_dir

    def compute_metrics(self, results: list) -> dict:
        img_emb, txt_emb, _ = self.gather(results)
        metrics = cxc_recalls(img_emb, txt_emb, self.annot_dir, self.tie_rule)
        MMLogger.get_current_instance().info(
            'CxC ' + ', '.join(f'{k} {v:.1f}' for k, v in metrics.items())
        )
        return dict(metrics, tie_rule=self.tie_rule)
