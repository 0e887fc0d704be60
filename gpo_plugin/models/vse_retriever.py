"""VSE∞ image–text retriever as an mmengine ``BaseModel``."""

from __future__ import annotations

from mmengine.model import BaseModel
from torch import Tensor

from gpo_plugin.registry import MODELS


@MODELS.register_module()
class VSERetriever(BaseModel):
    """Image branch + text branch + joint-embedding head.

    Each branch (``img_enc``, ``txt_enc``) embeds its set (regions / tokens) and pools it
    with the pooler of its config; the head l2-normalises and scores. Sub-module names
    follow the published VSE∞ checkpoints (``img_enc.*``, ``txt_enc.*``).

    Args:
        img_enc: image encoder config, e.g. ``dict(type='PrecompRegionEncoder', ...)``.
        txt_enc: text encoder config, ``BiGRUTextEncoder`` or ``BertTextEncoder``.
        head: head config. Defaults to ``dict(type='VSEHead')``.
        data_preprocessor: defaults to mmengine's ``BaseDataPreprocessor`` (moves the
            collated tensors of ``vse_collate`` to the device).

    ``forward(inputs, data_samples, mode)`` takes ``inputs = dict(regions (B, R, C),
    region_lengths (B,), tokens (B, T), token_lengths (B,))`` and
    ``data_samples = dict(img_idx (B,), cap_idx (B,))``:

    - ``'tensor'``: ``(img_emb (B, E), txt_emb (B, E))``, unit vectors;
    - ``'loss'``: ``dict(loss=...)`` (row b of both branches is a matching pair);
    - ``'predict'``: a list of B dicts ``img_emb, txt_emb, img_idx, cap_idx`` for the
      retrieval metric.
    """

    def __init__(
        self,
        img_enc: dict,
        txt_enc: dict,
        head: dict | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(
            data_preprocessor=data_preprocessor or dict(type='BaseDataPreprocessor'),
            init_cfg=init_cfg,
        )
        self.img_enc = MODELS.build(img_enc)
        self.txt_enc = MODELS.build(txt_enc)
        self.head = MODELS.build(head or dict(type='VSEHead'))

    def extract_feat(self, inputs: dict) -> tuple[Tensor, Tensor]:
        """Unit-norm image and caption embeddings, (B, E) each."""
        missing = {'regions', 'region_lengths', 'tokens', 'token_lengths'} - set(inputs)
        if missing:
            raise KeyError(
                f'VSERetriever: inputs lack {sorted(missing)}; build the dataloader '
                "with collate_fn=dict(type='vse_collate')."
            )
        img = self.img_enc(inputs['regions'], inputs['region_lengths'])
        txt = self.txt_enc(inputs['tokens'], inputs['token_lengths'])
        return self.head(img, txt)

    def forward(self, inputs: dict, data_samples: dict | None = None, mode: str = 'tensor'):
        img_emb, txt_emb = self.extract_feat(inputs)
        if mode == 'tensor':
            return img_emb, txt_emb
        if mode == 'loss':
            return self.head.loss(img_emb, txt_emb)
        if mode == 'predict':
            if data_samples is None:
                raise ValueError(
                    "VSERetriever: mode='predict' needs data_samples with img_idx and cap_idx."
                )
            img_idx, cap_idx = data_samples['img_idx'].tolist(), data_samples['cap_idx'].tolist()
            return [
                dict(img_emb=i, txt_emb=t, img_idx=ii, cap_idx=ci)
                for i, t, ii, ci in zip(img_emb, txt_emb, img_idx, cap_idx, strict=True)
            ]
        raise ValueError(f"VSERetriever: mode must be 'tensor', 'loss' or 'predict', got {mode!r}.")
