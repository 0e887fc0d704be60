from .avg_pooling import AvgPooling
from .base_set_pooling import BaseSetPooling, rank_weights
from .gem_pooling import GeMPooling
from .gpo import GPO
from .gsp import GSP
from .kmax_pooling import KMaxPooling
from .max_pooling import MaxPooling
from .pooling_output import PoolingOutput

__all__ = [
    'AvgPooling',
    'BaseSetPooling',
    'GPO',
    'GSP',
    'GeMPooling',
    'KMaxPooling',
    'MaxPooling',
    'PoolingOutput',
    'rank_weights',
]
