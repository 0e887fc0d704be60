"""VSE++ hinge-based triplet ranking loss (docs/vse.md#head-and-loss).

Registered as ``VSEContrastiveLoss``: the VSE++ / VSE∞ code calls it ``ContrastiveLoss``, the
prefix keeps that link while telling it apart from pytorch-metric-learning's
``ContrastiveLoss`` (pairwise margins), a different loss. ``ContrastiveLoss`` stays an alias in
the ``gpo_plugin`` scope only, for old configs, with a deprecation warning."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from gpo_plugin.registry import MODELS


@MODELS.register_module()
class VSEContrastiveLoss(nn.Module):
    """Bidirectional hinge loss over the in-batch similarity matrix S = im · sᵀ.

    ``cost_s[i, j] = [margin + S_ij - S_ii]_+`` (image i, negative caption j) and
    ``cost_im[i, j] = [margin + S_ij - S_jj]_+`` (caption j, negative image i), the
    diagonal excluded. With ``max_violation`` only the hardest negative of each row of
    ``cost_s`` and each column of ``cost_im`` counts (VSE++); otherwise all negatives.
    The result is summed over the batch. :class:`HardestNegativeHook` switches
    ``max_violation`` on after the warm-up epochs. Computed in float32 also under autocast
    (mixed precision): the margin 0.2 and the hinge differences need more than bf16's 8 bits.

    Args:
        margin: the margin alpha. Defaults to 0.2.
        max_violation: use the hardest negatives only. Defaults to False.
        loss_weight: multiplies the loss. Defaults to 1.0.

    Shapes:
        im (B, D), s (B, D), row i of both a matching pair -> scalar.
    """

    def __init__(
        self, margin: float = 0.2, max_violation: bool = False, loss_weight: float = 1.0
    ) -> None:
        super().__init__()
        self.margin = margin
        self.max_violation = max_violation
        self.loss_weight = loss_weight

    def forward(self, im: Tensor, s: Tensor) -> Tensor:
        if im.dim() != 2 or im.shape != s.shape:
            raise ValueError(
                f'{type(self).__name__}: image and caption embeddings must both be (B, D) '
                f'with matching rows, got {tuple(im.shape)} and {tuple(s.shape)}.'
            )
        dtype = torch.promote_types(im.dtype, torch.float32)
        with torch.autocast(device_type=im.device.type, enabled=False):
            return self.loss_weight * self._hinge(im.to(dtype), s.to(dtype))

    def _hinge(self, im: Tensor, s: Tensor) -> Tensor:
        scores = im @ s.t()
        diagonal = scores.diag().unsqueeze(1)
        cost_s = (self.margin + scores - diagonal).clamp(min=0)
        cost_im = (self.margin + scores - diagonal.t()).clamp(min=0)
        positives = torch.eye(scores.shape[0], dtype=torch.bool, device=scores.device)
        cost_s = cost_s.masked_fill(positives, 0)
        cost_im = cost_im.masked_fill(positives, 0)
        if self.max_violation:
            cost_s, cost_im = cost_s.max(dim=1).values, cost_im.max(dim=0).values
        return cost_s.sum() + cost_im.sum()

    def extra_repr(self) -> str:
        return f'margin={self.margin}, max_violation={self.max_violation}'


class ContrastiveLoss(VSEContrastiveLoss):
    """Deprecated name of :class:`VSEContrastiveLoss` (same arguments), registered in the
    ``gpo_plugin`` scope only so that PML's ``ContrastiveLoss`` keeps its name elsewhere."""

    def __init__(self, *args, **kwargs) -> None:
        warnings.warn(
            "type='ContrastiveLoss' for the VSE++ loss is deprecated: use "
            "type='VSEContrastiveLoss' (same arguments) in the config's head.loss.",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__(*args, **kwargs)


MODELS.register_local_alias('ContrastiveLoss', ContrastiveLoss)
