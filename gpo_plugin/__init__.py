"""gpo_plugin: learnable pooling (GPO, GSP) for mmpretrain/mmengine and PML.

Importing the package registers every module in the ``gpo_plugin`` registries (and
exports them to mmpretrain's) and allow-lists the globals mmengine checkpoints hold,
so they load with ``torch.load(weights_only=True)``, which mmengine's local checkpoint
loader is made to pass explicitly.
"""

import warnings

# mmpretrain warns on import that mmcv-lite has no compiled ops; none are used here.
warnings.filterwarnings('ignore', message='Fail to import ``MultiScaleDeformableAttention``')

from .utils.checkpoints import (  # noqa: E402
    UNSAFE_ENV,
    install_safe_mmengine_loader,
    unsafe_load_requested,
)
from .utils.safe_load import allow_mmengine_checkpoint_globals  # noqa: E402

allow_mmengine_checkpoint_globals()
# mmengine's loader of local checkpoints (resume, load_from) with weights_only=True explicit.
install_safe_mmengine_loader()
if unsafe_load_requested():
    warnings.warn(
        f'{UNSAFE_ENV} is set: torch.load calls without weights_only=True will unpickle '
        'arbitrary code. gpo_plugin passes weights_only=True everywhere and its tools refuse '
        f'to run; unset {UNSAFE_ENV}.',
        RuntimeWarning,
        stacklevel=2,
    )

from . import datasets, engine, evaluation, models  # noqa: E402,F401  (registers modules)

__version__ = '0.1.0'
