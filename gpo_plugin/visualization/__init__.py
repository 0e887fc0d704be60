"""Pictures: the drawing behind the pooling-weight hooks (mmengine and PML) and the tools."""

from .pooling_weights import (
    RankWeightPanel,
    check_set_sizes,
    draw_position_weights,
    draw_rank_weights,
    learned_rank_poolers,
    rank_weight_curves,
    save_png,
)

__all__ = [
    'RankWeightPanel',
    'check_set_sizes',
    'draw_position_weights',
    'draw_rank_weights',
    'learned_rank_poolers',
    'rank_weight_curves',
    'save_png',
]
