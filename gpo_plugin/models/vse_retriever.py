"""VSE∞ image–text retriever as an mmengine ``BaseModel``."""

from __future__ import annotations

import torch
from mmengine.model import BaseModel
from torch import Tensor

from gpo_plugin.registry import MODELS


@MODELS.register_module()
class VSERetriever(BaseModel):
    """Image branch + text branch + joint-embedding head.

    Each branch (``img_enc``, ``txt_enc``) embeds its input and pools it with the pooler
    of its config; the head l2-normalises and scores. Every encoder has the same
    interface, ``forward(x, lengths=None) -> (B, E)``, so the retriever, head, loss and
    metric never know which one runs: precomputed region sets
    (``PrecompRegionEncoder``), raw images (``BackboneGridEncoder``), token ids (BiGRU,
    BERT). Sub-module names follow the published VSE∞ checkpoints (``img_enc.*``,
    ``txt_enc.*``).

    Args:
        img_enc: image encoder config, e.g. ``dict(type='PrecompRegionEncoder', ...)``.
        txt_enc: text encoder config, ``BiGRUTextEncoder`` or ``BertTextEncoder``.
        head: head config. Defaults to ``dict(type='VSEHead')``.
        data_preprocessor: defaults to ``dict(type='VSEDataPreprocessor')`` (moves the
            batch to the device; with ``mean``/``std`` it also normalises raw images).

    ``forward(inputs, data_samples, mode)`` takes ``inputs = dict(img, img_lengths, txt,
    txt_lengths)`` as ``vse_collate`` makes them: ``img`` (B, R, C) region sets with
    ``img_lengths`` (B,), or (B, 3, H, W) images (no lengths); ``txt`` (B, T) token ids
    with ``txt_lengths`` (B,); optionally ``img_drop_rate``/``img_drop_seed`` (B,) for the
    grid encoder's size augmentation (the keys of ``VSE_INPUT_KEYS``, the names the
    samples carry from the dataset on). ``data_samples = dict(img_idx (B,), cap_idx (B,))``:

    - ``'tensor'``: ``(img_emb (B, E), txt_emb (B, E))``, unit vectors;
    - ``'loss'``: ``dict(loss=...)`` (row b of both branches is a matching pair), times
      ``loss_scale`` (set by ``BackboneWarmupHook``; 1 otherwise);
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
        # Built here (not by mmengine's root registry, which does not see this scope).
        preprocessor = data_preprocessor or dict(type='VSEDataPreprocessor')
        if isinstance(preprocessor, dict):
            preprocessor = MODELS.build(preprocessor)
        super().__init__(data_preprocessor=preprocessor, init_cfg=init_cfg)
        self.img_enc = MODELS.build(img_enc)
        self.txt_enc = MODELS.build(txt_enc)
        self.head = MODELS.build(head or dict(type='VSEHead'))
        # Multiplies the training loss; a plain attribute (not state), derived from the
        # epoch by BackboneWarmupHook so a resumed run sets it again.
        self.loss_scale = 1.0

    def encode_image(self, img: Tensor, lengths: Tensor | None = None, **aug) -> Tensor:
        """Pooled image features (B, E), not normalised; ``aug`` goes to encoders that
        take it (``drop_rate``/``drop_seed`` of the grid encoder)."""
        return self.img_enc(img, lengths, **aug) if aug else self.img_enc(img, lengths)

    def encode_text(self, txt: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Pooled caption features (B, E), not normalised."""
        return self.txt_enc(txt, lengths)

    def extract_feat(self, inputs: dict) -> tuple[Tensor, Tensor]:
        """Unit-norm image and caption embeddings, (B, E) each."""
        missing = {'img', 'txt'} - set(inputs)
        if missing:
            raise KeyError(
                f'VSERetriever: inputs lack {sorted(missing)}; build the dataloader '
                "with collate_fn=dict(type='vse_collate')."
            )
        aug = {}
        if 'img_drop_rate' in inputs:
            aug = dict(drop_rate=inputs['img_drop_rate'], drop_seed=inputs['img_drop_seed'])
        img = self.encode_image(inputs['img'], inputs.get('img_lengths'), **aug)
        txt = self.encode_text(inputs['txt'], inputs.get('txt_lengths'))
        return self.head(img, txt)

    def predict_embeddings(self, inputs: dict, img_idx: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`extract_feat` encoding each image of the batch once.

        Evaluation loaders yield (image, caption) pairs, so an image comes with each of its
        captions (5 in a row for COCO); the image branch runs on the first copy of each
        ``img_idx`` and the embeddings are repeated. In eval mode every sample's embedding
        depends on that sample only, so the result is the same.
        """
        img_idx = img_idx.to(inputs['img'].device)
        if 'img_drop_rate' in inputs or self.training or not {'img', 'txt'} <= set(inputs):
            return self.extract_feat(inputs)
        unique, inverse = torch.unique(img_idx, return_inverse=True)
        if len(unique) == len(img_idx):
            return self.extract_feat(inputs)
        positions = torch.arange(len(img_idx), device=img_idx.device)
        first = torch.full_like(unique, len(img_idx)).scatter_reduce_(0, inverse, positions, 'amin')
        lengths = inputs.get('img_lengths')
        img = self.encode_image(inputs['img'][first], None if lengths is None else lengths[first])
        txt = self.encode_text(inputs['txt'], inputs.get('txt_lengths'))
        return self.head.embed_image(img)[inverse], self.head.embed_text(txt)

    def forward(self, inputs: dict, data_samples: dict | None = None, mode: str = 'tensor'):
        if mode != 'predict':
            img_emb, txt_emb = self.extract_feat(inputs)
        if mode == 'tensor':
            return img_emb, txt_emb
        if mode == 'loss':
            losses = self.head.loss(img_emb, txt_emb)
            if self.loss_scale != 1.0:
                losses = {k: v * self.loss_scale for k, v in losses.items()}
            return losses
        if mode == 'predict':
            if data_samples is None:
                raise ValueError(
                    "VSERetriever: mode='predict' needs data_samples with img_idx and cap_idx."
                )
            img_emb, txt_emb = self.predict_embeddings(inputs, data_samples['img_idx'])
            img_idx, cap_idx = data_samples['img_idx'].tolist(), data_samples['cap_idx'].tolist()
            return [
                dict(img_emb=i, txt_emb=t, img_idx=ii, cap_idx=ci)
                for i, t, ii, ci in zip(img_emb, txt_emb, img_idx, cap_idx, strict=True)
            ]
        raise ValueError(f"VSERetriever: mode must be 'tensor', 'loss' or 'predict', got {mode!r}.")
