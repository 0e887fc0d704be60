"""Float32 matrix products through oneDNN on CPUs where MKL leaves AVX-512 unused.

PyTorch sends CPU float32 ``F.linear`` / ``mm`` to MKL. On AMD CPUs MKL runs its AVX2
kernels even when the CPU has AVX-512, while oneDNN (shipped inside PyTorch as ``mkldnn``)
uses AVX-512 there: at the shapes the package multiplies, one thread, 2.0-2.4x MKL's
throughput on a full-width AVX-512 AMD EPYC (Zen 5) and 1.1-1.6x on Zen 4, whose AVX-512 runs
at AVX2 width (``benchmarks/benchmark_matmul.py``, docs/benchmarks.md). The arithmetic is the
same IEEE float32 (float32 products and sums, no reduced precision); only the order of the
sums differs, as between any two BLAS libraries.

:func:`linear` is ``F.linear`` with that routing and its own backward. It falls back to
``F.linear`` for anything else: GPUs, other dtypes, autocast (``--amp``), empty inputs, and
CPUs where the routing is off. The routing is decided once per process:

- ``GPO_PLUGIN_ONEDNN_LINEAR=1`` / ``0`` forces it on / off;
- unset or ``auto``: on for x86-64 CPUs with AVX-512 whose vendor is not Intel (on Intel
  CPUs MKL has AVX-512 kernels itself and the gain was not measured).
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

ENV_VAR = 'GPO_PLUGIN_ONEDNN_LINEAR'
_forced: bool | None = None  # set by onednn_routing(), for benchmarks and tests
# Below about 2M multiply-adds oneDNN's fixed cost per call (~10 us, measured) outweighs
# its faster kernel, so small products stay with PyTorch's default.
MIN_MULTIPLY_ADDS = 1 << 21


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)``, through oneDNN where :func:`routed` says so.

    Args:
        x: (..., in_features).
        weight: (out_features, in_features).
        bias: (out_features,) or None.

    Returns:
        (..., out_features).
    """
    if not routed(x, weight) or x.numel() * weight.shape[0] < MIN_MULTIPLY_ADDS:
        return F.linear(x, weight, bias)
    return _OneDNNLinear.apply(x, weight, bias)


def matmul_nt(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """``a @ b.T (+ bias)`` for (M, K) and (N, K) matrices (strided views welcome), for code
    that needs no autograd through it: scores, distances, hand-written backwards."""
    tracked = torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)
    if tracked or not routed(a, b) or a.numel() * b.shape[0] < MIN_MULTIPLY_ADDS:
        return a @ b.t() if bias is None else torch.addmm(bias, a, b.t())
    return _product(a, b, bias)


def routed(*tensors: Tensor) -> bool:
    """Whether a (large enough) product of these tensors goes through oneDNN."""
    enabled = onednn_enabled() if _forced is None else _forced
    return (
        enabled
        and all(t.device.type == 'cpu' and t.dtype == torch.float32 for t in tensors)
        and all(t.numel() for t in tensors)
        and not torch.is_autocast_enabled('cpu')
    )


@functools.cache
def onednn_enabled() -> bool:
    """The process-wide switch (module docstring); cached, read once."""
    choice = os.environ.get(ENV_VAR, 'auto').strip().lower()
    if choice not in ('auto', '0', '1'):
        raise ValueError(f'{ENV_VAR} must be 0, 1 or auto, got {choice!r}.')
    available = torch.backends.mkldnn.is_available() and hasattr(
        torch.ops.mkldnn, '_linear_pointwise'
    )
    if choice != 'auto':
        return choice == '1' and available
    return available and _avx512_non_intel_cpu()


@contextlib.contextmanager
def onednn_routing(enabled: bool) -> Iterator[None]:
    """Turn the routing on or off inside a ``with`` block, whatever the process default;
    benchmarks use it to time the same code with MKL's products."""
    global _forced
    previous, _forced = _forced, enabled
    try:
        yield
    finally:
        _forced = previous


def _avx512_non_intel_cpu() -> bool:
    if platform.machine().lower() not in ('x86_64', 'amd64'):
        return False
    if torch.backends.cpu.get_cpu_capability() != 'AVX512':
        return False
    try:
        with open('/proc/cpuinfo') as handle:
            vendors = {line.split(':', 1)[1].strip() for line in handle if 'vendor_id' in line}
    except OSError:
        return False
    return bool(vendors) and 'GenuineIntel' not in vendors


def _product(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """``a @ b.T (+ bias)`` for 2-D float32 CPU tensors; transposed views are accepted."""
    a, b = _matrix_layout(a), _matrix_layout(b)
    return torch.ops.mkldnn._linear_pointwise(a, b, bias, 'none', [], '')


def _matrix_layout(t: Tensor) -> Tensor:
    """``t`` itself if it is row- or column-major (oneDNN reads both), else a copy."""
    return t if 1 in t.stride() else t.contiguous()


class _OneDNNLinear(torch.autograd.Function):
    """``x @ W^T + b`` with each backward product through oneDNN as well."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        rows = x.reshape(-1, x.shape[-1])
        ctx.save_for_backward(rows, weight)
        ctx.input_shape = x.shape
        ctx.has_bias = bias is not None
        return _product(rows, weight, bias).view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        rows, weight = ctx.saved_tensors
        grad_rows = grad_out.reshape(-1, grad_out.shape[-1])
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _product(grad_rows, weight.t()).view(ctx.input_shape)
        if ctx.needs_input_grad[1]:
            grad_w = _product(grad_rows.t(), rows.t())
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_rows.sum(0)
        return grad_x, grad_w, grad_b
