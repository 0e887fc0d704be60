"""The published VSE∞ encoders, written from their description (docs/vse.md#published-vse-checkpoints),
independently of gpo_plugin's modules: same parameter names, same forward passes.

Tests build these with known weights, save them in the published checkpoint layout, convert the
checkpoint with ``tools/model_converters/convert_vse_infty.py`` and compare the converted model's embeddings with
the ones computed here.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def sinusoid_table(length: int, channels: int) -> Tensor:
    """(length, channels): sin at even channels, cos at odd ones, angle k / 10000^(2j/d)."""
    position = torch.arange(length, dtype=torch.float).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, channels, 2).float() * (-math.log(10000.0) / channels))
    table = torch.zeros(length, channels)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


class PublishedGPO(nn.Module):
    """GPO as the published code runs it: a packed BiGRU over the encodings of every sample,
    -10000 at padded scores and features, sort along the set axis, weighted sum."""

    def __init__(self, d_pe: int = 32, d_hidden: int = 32) -> None:
        super().__init__()
        self.d_pe = d_pe
        self.gru = nn.GRU(d_pe, d_hidden, 1, batch_first=True, bidirectional=True)
        self.linear = nn.Linear(d_hidden, 1, bias=False)

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        batch, max_len = features.shape[0], int(lengths.max())
        valid = (torch.arange(max_len).expand(batch, max_len) < lengths.unsqueeze(1)).unsqueeze(-1)
        encodings = sinusoid_table(max_len, self.d_pe).expand(batch, -1, -1).masked_fill(~valid, 0)
        packed = pack_padded_sequence(
            encodings, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        hidden = pad_packed_sequence(self.gru(packed)[0], batch_first=True)[0]
        half = hidden.shape[-1] // 2
        scores = self.linear((hidden[..., :half] + hidden[..., half:]) / 2)
        scores = scores.masked_fill(~valid, -10000)
        weights = torch.softmax(scores / 0.1, dim=1)
        ordered = features[:, :max_len].masked_fill(~valid, -10000)
        ordered = ordered.sort(dim=1, descending=True).values.masked_fill(~valid, 0)
        return (ordered * weights).sum(dim=1)


class PublishedMLP(nn.Module):
    """``num_layers`` Linear layers with a BatchNorm after each; the last BatchNorm exists
    (and is saved) but the forward never calls it. BatchNorm over all B*N positions."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int = 2) -> None:
        super().__init__()
        self.num_layers = num_layers
        sizes = [hidden] * (num_layers - 1)
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip([in_dim, *sizes], [*sizes, out_dim], strict=True)
        )
        self.bns = nn.ModuleList(nn.BatchNorm1d(b) for b in [*sizes, out_dim])

    def forward(self, x: Tensor) -> Tensor:
        batch, num, dim = x.shape
        x = x.reshape(batch * num, dim)
        for i, (bn, layer) in enumerate(zip(self.bns, self.layers, strict=True)):
            x = F.relu(bn(layer(x))) if i < self.num_layers - 1 else layer(x)
        return x.view(batch, num, -1)


class PublishedPrecompImageEncoder(nn.Module):
    """``precomp_enc_type='basic'``: fc(x) + mlp(x) -> GPO -> l2-norm."""

    def __init__(self, img_dim: int, embed_size: int) -> None:
        super().__init__()
        self.fc = nn.Linear(img_dim, embed_size)
        self.mlp = PublishedMLP(img_dim, embed_size // 2, embed_size, 2)
        self.gpool = PublishedGPO()

    def forward(self, images: Tensor, lengths: Tensor) -> Tensor:
        features = self.fc(images) + self.mlp(images)
        return F.normalize(self.gpool(features, lengths), dim=-1)


class PublishedBiGRUTextEncoder(nn.Module):
    """Embedding -> packed BiGRU, the two directions averaged -> GPO -> l2-norm."""

    def __init__(self, vocab_size: int, word_dim: int, embed_size: int, num_layers: int = 1):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, word_dim)
        self.rnn = nn.GRU(word_dim, embed_size, num_layers, batch_first=True, bidirectional=True)
        self.gpool = PublishedGPO()

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        packed = pack_padded_sequence(
            self.embed(ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        hidden = pad_packed_sequence(self.rnn(packed)[0], batch_first=True)[0]
        half = hidden.shape[-1] // 2
        return F.normalize(
            self.gpool((hidden[..., :half] + hidden[..., half:]) / 2, lengths), dim=-1
        )


class PublishedBertTextEncoder(nn.Module):
    """BERT (attention on the non-zero ids) -> Linear -> GPO over all tokens -> l2-norm."""

    def __init__(self, bert: nn.Module, embed_size: int) -> None:
        super().__init__()
        self.bert = bert
        self.linear = nn.Linear(bert.config.hidden_size, embed_size)
        self.gpool = PublishedGPO()

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        hidden = self.bert(input_ids=ids, attention_mask=(ids != 0).float())[0]
        return F.normalize(self.gpool(self.linear(hidden), lengths), dim=-1)


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Known, non-default weights: every parameter N(0, 0.1^2)-perturbed, every BatchNorm with
    non-trivial running statistics (so eval mode differs from train mode)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm1d | nn.BatchNorm2d):
                bn.running_mean.copy_(0.5 * torch.randn(bn.num_features, generator=generator))
                bn.running_var.copy_(0.5 + torch.rand(bn.num_features, generator=generator))
                bn.num_batches_tracked.fill_(123)
    return module


def save_published_checkpoint(
    path: str, img_enc: nn.Module, txt_enc: nn.Module, **opt: object
) -> None:
    """``torch.save`` in the published layout: model = [image state, text state], opt a Namespace."""
    torch.save(
        {
            'epoch': 24,
            'model': [img_enc.state_dict(), txt_enc.state_dict()],
            'best_rsum': 512.5,
            'opt': argparse.Namespace(**opt),
            'Eiters': 1000,
        },
        path,
    )
