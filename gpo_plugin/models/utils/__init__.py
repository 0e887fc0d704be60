from .set_ops import (
    check_set_input,
    length_mask,
    sinusoid_encoding,
    sort_channels_descending,
    weighted_sum_sorted,
)

__all__ = [
    'check_set_input',
    'length_mask',
    'sinusoid_encoding',
    'sort_channels_descending',
    'weighted_sum_sorted',
]
