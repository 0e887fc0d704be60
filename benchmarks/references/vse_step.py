"""The published VSE∞ training step (BiGRU text, precomputed regions), re-implemented as
the published code computes it, as the baseline of ``benchmarks/benchmark_train_step.py``.

What the published step does and this file repeats: the collate function sorts the batch
by caption length (longest first) and zero-pads regions and tokens; the image encoder is
``fc(x) + MLP(x)`` with the MLP's BatchNorm over all B * R positions (padding included);
the text encoder packs the sorted captions for one ``nn.GRU`` (bidirectional, directions
averaged); both branches pool with the published GPO class (``references.gpo.published_gpo``:
the BiGRU over packed positional encodings of the whole batch, padding at -10000 before
the sort); the VSE++ hinge loss is summed; then backward, gradient-norm clipping and an
AdamW step. For benchmarks only: it takes its parameters from a ``VSERetriever`` so both
train the same weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence

from references.gpo import published_gpo


def published_collate(samples: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, ...]:
    """(regions (R_i, C), tokens (T_i,)) pairs -> padded batch sorted by caption length."""
    samples = sorted(samples, key=lambda s: len(s[1]), reverse=True)
    regions = pad_sequence([s[0] for s in samples], batch_first=True)
    region_lengths = torch.tensor([len(s[0]) for s in samples])
    tokens = pad_sequence([s[1] for s in samples], batch_first=True)
    token_lengths = torch.tensor([len(s[1]) for s in samples])
    return regions, region_lengths, tokens, token_lengths


def published_image_branch(img_enc: nn.Module, regions: Tensor, lengths: Tensor) -> Tensor:
    """fc + MLP residual over every position (BN statistics include padding), then GPO."""
    batch, num, channels = regions.shape
    features = img_enc.fc(regions)
    mlp = img_enc.mlp
    hidden = mlp.layers[0](regions).view(batch * num, -1)
    hidden = F.relu(mlp.bns[0](hidden)).view(batch, num, -1)
    features = features + mlp.layers[1](hidden)
    return published_gpo(img_enc.gpool, features, lengths)[0]


def published_text_branch(txt_enc: nn.Module, tokens: Tensor, lengths: Tensor) -> Tensor:
    """Embedding, packed BiGRU over length-sorted captions, directions averaged, GPO."""
    words = txt_enc.embed(tokens)
    packed = pack_padded_sequence(words, lengths.cpu(), batch_first=True)
    out, _ = txt_enc.rnn(packed)
    hidden, out_lengths = pad_packed_sequence(out, batch_first=True)
    half = hidden.size(2) // 2
    hidden = (hidden[:, :, :half] + hidden[:, :, half:]) / 2
    return published_gpo(txt_enc.gpool, hidden, out_lengths.to(hidden.device))[0]


def published_hinge_loss(im: Tensor, s: Tensor, margin: float, max_violation: bool) -> Tensor:
    """VSE++ ContrastiveLoss as published: all or hardest negatives, summed."""
    scores = im.mm(s.t())
    diagonal = scores.diag().view(im.size(0), 1)
    d1 = diagonal.expand_as(scores)
    d2 = diagonal.t().expand_as(scores)
    cost_s = (margin + scores - d1).clamp(min=0)
    cost_im = (margin + scores - d2).clamp(min=0)
    mask = torch.eye(scores.size(0), device=scores.device) > 0.5
    cost_s = cost_s.masked_fill_(mask, 0)
    cost_im = cost_im.masked_fill_(mask, 0)
    if max_violation:
        cost_s = cost_s.max(1)[0]
        cost_im = cost_im.max(0)[0]
    return cost_s.sum() + cost_im.sum()


def published_train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    samples: list[tuple[Tensor, Tensor]],
    device: torch.device,
    max_violation: bool = False,
    grad_clip: float = 2.0,
) -> float:
    """One published training iteration on ``samples``; returns the loss value."""
    regions, region_lengths, tokens, token_lengths = published_collate(samples)
    regions, tokens = regions.to(device), tokens.to(device)
    region_lengths = region_lengths.to(device)
    img = F.normalize(published_image_branch(model.img_enc, regions, region_lengths), dim=-1)
    txt = F.normalize(published_text_branch(model.txt_enc, tokens, token_lengths), dim=-1)
    optimizer.zero_grad()
    loss = published_hinge_loss(img, txt, 0.2, max_violation)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()
