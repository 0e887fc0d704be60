from .avg_pooling import AvgPooling
from .base_set_pooling import BaseSetPooling
from .gem_pooling import GeMPooling
from .gpo import GPO
from .gsp import GSP, GSPOutput  # noqa: F401
from .kmax_pooling import KMaxPooling
from .max_pooling import MaxPooling

__all__ = ['AvgPooling', 'BaseSetPooling', 'GPO', 'GeMPooling', 'KMaxPooling', 'MaxPooling']
