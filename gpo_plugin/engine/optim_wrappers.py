"""Mixed precision on the CPU: mmengine's ``AmpOptimWrapper`` refuses to run without a GPU."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from torch import nn

from gpo_plugin.registry import PASS_THROUGH_REGISTRIES

OPTIM_WRAPPERS = PASS_THROUGH_REGISTRIES['OPTIM_WRAPPERS']


@OPTIM_WRAPPERS.register_module()
class CPUBf16AmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward passes run under ``torch.autocast('cpu', bfloat16)``.

    bfloat16 has float32's exponent range, so gradients need no loss scaling (and the CPU
    has no GradScaler); the backward pass and the optimiser step stay in float32, as with
    mmengine's ``AmpOptimWrapper`` on a GPU. The modules keep their numerically delicate
    parts in float32 under autocast: GPO's weights θ, GSP's transport solve, and the VSE
    and zero-shot losses. ``tools/train.py --amp`` selects this wrapper when no GPU is
    visible (``optim_wrapper.type='gpo_plugin.CPUBf16AmpOptimWrapper'``).

    Args:
        dtype: only ``'bfloat16'`` (CPU autocast supports no other low-precision type).
        **kwargs: those of ``OptimWrapper`` (``optimizer``, ``clip_grad``,
            ``accumulative_counts``).
    """

    def __init__(self, dtype: str | torch.dtype = 'bfloat16', **kwargs) -> None:
        if dtype not in ('bfloat16', torch.bfloat16):
            raise ValueError(
                f'CPUBf16AmpOptimWrapper: CPU autocast supports bfloat16 only, got {dtype!r}; '
                'float16 mixed precision needs a GPU (AmpOptimWrapper).'
            )
        super().__init__(**kwargs)
        self.cast_dtype = torch.bfloat16

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield
