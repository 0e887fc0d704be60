"""gpo_plugin: learnable pooling (GPO, GSP) for mmpretrain/mmengine and PML.

Importing the package registers every module in the ``gpo_plugin`` registries (and
exports them to mmpretrain's) and allow-lists the globals mmengine checkpoints hold,
so they load with ``torch.load(weights_only=True)``.
"""

import warnings

# mmpretrain warns on import that mmcv-lite has no compiled ops; none are used here.
warnings.filterwarnings('ignore', message='Fail to import ``MultiScaleDeformableAttention``')

from .utils.safe_load import allow_mmengine_checkpoint_globals  # noqa: E402

allow_mmengine_checkpoint_globals()

from . import datasets, engine, evaluation, models  # noqa: E402,F401  (registers modules)

__version__ = '0.1.0'
