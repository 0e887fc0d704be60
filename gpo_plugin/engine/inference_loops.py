"""mmengine's validation and test loops under ``torch.inference_mode``."""

from __future__ import annotations

import torch
from mmengine.runner import TestLoop, ValLoop

from gpo_plugin.registry import PASS_THROUGH_REGISTRIES

LOOPS = PASS_THROUGH_REGISTRIES['LOOPS']


@LOOPS.register_module()
class InferenceValLoop(ValLoop):
    """``ValLoop`` whose iterations run under ``torch.inference_mode`` instead of
    ``no_grad``: no version counters or view tracking on the tensors of the forward pass.
    Same arguments as mmengine's ``ValLoop``."""

    def run_iter(self, idx, data_batch) -> None:
        with torch.inference_mode():
            super().run_iter(idx, data_batch)


@LOOPS.register_module()
class InferenceTestLoop(TestLoop):
    """``TestLoop`` whose iterations run under ``torch.inference_mode`` (see
    :class:`InferenceValLoop`). Same arguments as mmengine's ``TestLoop``."""

    def run_iter(self, idx, data_batch) -> None:
        with torch.inference_mode():
            super().run_iter(idx, data_batch)
