"""Kernels: autograd functions and low-level tensor routines the models are built on (as
``mmcv.ops``), one concept a file. They take checked input (``models/utils/checks.py``) and know
nothing of registries or configs."""

from .masks import length_mask
from .packing import pack_rows, packed_positions, pad_packed_rows
from .rank_weighted_sum import weighted_sum_sorted
from .sorting import network_sort, sort_channels_descending, sorting_network
from .stepped_gru import stepped_gru

__all__ = [
    'length_mask',
    'network_sort',
    'pack_rows',
    'packed_positions',
    'pad_packed_rows',
    'sort_channels_descending',
    'sorting_network',
    'stepped_gru',
    'weighted_sum_sorted',
]
