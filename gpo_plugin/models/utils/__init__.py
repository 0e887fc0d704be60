"""Plain model math (positional encoding, GSP's partial transport) and the models' input checks.
Kernels (sorting, packing, the stepped GRU, masks) live in :mod:`gpo_plugin.ops`."""

from .checks import (
    LengthsLike,
    check_feature_map,
    check_lengths,
    check_set_input,
    check_token_lengths,
)
from .positional_encoding import sinusoid_encoding

__all__ = [
    'LengthsLike',
    'check_feature_map',
    'check_lengths',
    'check_set_input',
    'check_token_lengths',
    'sinusoid_encoding',
]
