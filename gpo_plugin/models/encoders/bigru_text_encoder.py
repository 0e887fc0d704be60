"""Text encoder: word embedding + bidirectional GRU (VSE∞'s BiGRU path), docs/vse.md#text-encoders."""

from __future__ import annotations

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from gpo_plugin.ops.packing import pack_rows, packed_positions, pad_packed_rows
from gpo_plugin.ops.stepped_gru import stepped_gru
from gpo_plugin.registry import MODELS
from gpo_plugin.utils.vocab import read_vocab

from ..utils.checks import check_token_lengths

GRU_IMPLS = ('auto', 'steps', 'packed')


@MODELS.register_module()
class BiGRUTextEncoder(BaseModule):
    """Token ids -> embedding (uniform ±0.1) -> BiGRU (directions averaged) -> pooler.

    Parameter names (``embed``, ``rnn``, ``gpool``) match the VSE∞ checkpoints' ``txt_enc``.

    Args:
        vocab_size: number of words; or give ``vocab_file`` to read it from the JSON
            written by ``tools/misc/build_vocab.py``.
        vocab_file: vocabulary JSON (used when ``vocab_size`` is None).
        word_dim: word embedding size. Defaults to 300.
        embed_dim: GRU hidden size = joint embedding size. Defaults to 1024.
        num_layers: GRU layers. Defaults to 1.
        pooling: config of the pooler. Defaults to ``dict(type='GPO')``.
        gru_impl: how the GRU runs over the packed captions, the same function either way:
            ``'steps'`` steps it by hand (one input projection for all steps, a
            hand-written backward; :func:`~gpo_plugin.ops.stepped_gru.stepped_gru`),
            about 1.4x faster than ``nn.GRU`` on CPU; ``'packed'`` calls ``nn.GRU`` (cuDNN
            on CUDA); ``'auto'`` picks ``'steps'`` for CPU inputs outside autocast and
            ``'packed'`` otherwise. The parameters are ``rnn``'s (an ``nn.GRU``) in every
            case. Defaults to ``'auto'``.

    Shapes:
        tokens (B, T) long, lengths (B,) -> pooled (B, E) (not normalised).
    """

    def __init__(
        self,
        vocab_size: int | None = None,
        vocab_file: str | None = None,
        word_dim: int = 300,
        embed_dim: int = 1024,
        num_layers: int = 1,
        pooling: dict | None = None,
        gru_impl: str = 'auto',
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if vocab_size is None:
            if vocab_file is None:
                raise ValueError('BiGRUTextEncoder: give `vocab_size` or `vocab_file`.')
            vocab_size = len(read_vocab(vocab_file))
        if gru_impl not in GRU_IMPLS:
            raise ValueError(
                f'BiGRUTextEncoder: `gru_impl` must be one of {GRU_IMPLS}, got {gru_impl!r}.'
            )
        self.gru_impl = gru_impl
        self.embed_dim = embed_dim
        self.embed = nn.Embedding(vocab_size, word_dim)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        self.rnn = nn.GRU(word_dim, embed_dim, num_layers, batch_first=True, bidirectional=True)
        self.gpool = MODELS.build(pooling or dict(type='GPO'))

    def embed_tokens(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """Per-token embeddings (B, T_max, E), zero past each length; ``lengths`` already
        checked (:meth:`forward`)."""
        if tokens.max() >= self.embed.num_embeddings:
            raise ValueError(
                f'BiGRUTextEncoder: token id {int(tokens.max())} is outside the '
                f'vocabulary ({self.embed.num_embeddings} words); the model and the '
                'tokenizer must use the same vocab_file.'
            )
        # One gather to pack and one index_copy to pad: pack_padded_sequence and
        # pad_packed_sequence differentiate with a whole-batch copy per run of equal batch
        # sizes (gpo_plugin/ops/packing.py).
        order = packed_positions(lengths, *tokens.shape)
        if self.use_stepped_gru(tokens.device.type) and not torch.is_grad_enabled():
            # Inference: each distinct word of the batch is embedded and projected once
            # (the same states; training keeps one row per token, so its gradients are
            # summed in the order they always were).
            words, row_index = tokens.flatten()[order.data].unique(return_inverse=True)
            distinct = PackedSequence(self.embed(words), *order[1:])
            states = stepped_gru(self.rnn, distinct, row_index)
        else:
            states = self.run_gru(pack_rows(self.embed(tokens), order))
        forward_dir, backward_dir = states.data.split(self.embed_dim, dim=-1)
        return pad_packed_rows((forward_dir + backward_dir) / 2, order.data, *tokens.shape)

    def use_stepped_gru(self, device: str) -> bool:
        """Whether ``gru_impl`` picks :func:`stepped_gru` for inputs on ``device``."""
        return self.gru_impl == 'steps' or (
            self.gru_impl == 'auto' and device == 'cpu' and not torch.is_autocast_enabled(device)
        )

    def run_gru(self, packed: PackedSequence) -> PackedSequence:
        """``self.rnn(packed)[0]``, by the implementation ``gru_impl`` selects."""
        if self.use_stepped_gru(packed.data.device.type):
            return stepped_gru(self.rnn, packed)
        return self.rnn(packed)[0]

    def forward(self, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
        lengths = check_token_lengths(tokens, lengths, 'BiGRUTextEncoder')
        return self.gpool.pool_padded(self.embed_tokens(tokens, lengths), lengths).pooled
