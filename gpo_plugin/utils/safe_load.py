"""Make mmengine checkpoints load with ``torch.load(weights_only=True)``.

Since torch 2.6, ``torch.load`` refuses any global outside an allow-list, and mmengine
0.10.x checkpoints hold a few: its ``HistoryBuffer`` (from the message hub), numpy
arrays, scalars and dtypes (from the meta/log state). This module allow-lists exactly
those, so ``resume``/``load_from`` work with safe loading on and a checkpoint that
carries any other pickled object is still refused.
"""

from __future__ import annotations

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from numpy import dtypes as np_dtypes

try:  # numpy >= 2 keeps them in numpy._core
    from numpy._core.multiarray import _reconstruct, scalar
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar


# HistoryBuffer registers these four lazily, on its first construction, so a process that
# loads a checkpoint before building any buffer has an empty ``_statistics_methods``.
_DEFAULT_STATISTICS = frozenset({'min', 'max', 'current', 'mean'})


def history_buffer_method(owner: type, name: str):
    """Stand-in for ``builtins.getattr`` inside checkpoints.

    ``HistoryBuffer.__getstate__`` stores its statistics methods, which pickle as
    ``getattr(HistoryBuffer, 'mean')``. Allow-listing the real ``getattr`` would let a
    checkpoint read any attribute of any allowed object; this allows only those methods.
    """
    allowed = _DEFAULT_STATISTICS | HistoryBuffer._statistics_methods.keys()
    if owner is HistoryBuffer and name in allowed:
        return getattr(owner, name)
    raise torch.serialization.pickle.UnpicklingError(
        f'checkpoint asks for getattr({owner!r}, {name!r}); only the statistics methods of '
        "mmengine's HistoryBuffer are allowed in a safely loaded checkpoint."
    )


def _numpy_dtype_classes() -> list[type]:
    return [
        cls
        for cls in vars(np_dtypes).values()
        if isinstance(cls, type) and issubclass(cls, np.dtype)
    ]


def mmengine_checkpoint_globals() -> list:
    """Every global an mmengine checkpoint needs beyond torch's defaults."""
    return [
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        _reconstruct,
        scalar,
        (history_buffer_method, 'builtins.getattr'),
        *_numpy_dtype_classes(),
    ]


def allow_mmengine_checkpoint_globals() -> None:
    """Register :func:`mmengine_checkpoint_globals` with torch's safe unpickler."""
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
