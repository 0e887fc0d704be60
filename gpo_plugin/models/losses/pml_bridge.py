"""Bridge to pytorch-metric-learning: build its losses, miners, distances, reducers and
regularizers from config dicts by class name.

The names live in their own registry, ``PML_COMPONENTS``, filled from PML's modules, so a config
``loss=dict(type='ContrastiveLoss', pos_margin=0, neg_margin=0.5)`` always means PML's class
(``MODELS`` has a different, VSE ``ContrastiveLoss``). Nested dicts with a ``type`` are built
too: ``dict(type='TripletMarginLoss', distance=dict(type='CosineSimilarity'))``.
"""

from __future__ import annotations

import inspect
from typing import Any

from mmengine.registry import Registry
from pytorch_metric_learning import distances, losses, miners, reducers, regularizers

PML_COMPONENTS = Registry('pytorch-metric-learning component')

for _module in (losses, miners, distances, reducers, regularizers):
    for _name, _cls in vars(_module).items():
        if inspect.isclass(_cls) and not _name.startswith('_') and _name not in PML_COMPONENTS:
            PML_COMPONENTS.register_module(name=_name, module=_cls)


def build_pml(cfg: dict | Any) -> Any:
    """Build a PML object (and any nested PML objects) from a config dict with ``type``.

    Non-dict values pass through unchanged, so already-built PML objects are accepted.
    """
    if isinstance(cfg, list | tuple):
        return type(cfg)(build_pml(item) for item in cfg)
    if not isinstance(cfg, dict) or 'type' not in cfg:
        return cfg
    cfg = dict(cfg)
    name = cfg.pop('type')
    cls = name if inspect.isclass(name) else PML_COMPONENTS.get(name)
    if cls is None:
        raise KeyError(
            f'build_pml: {name!r} is not a pytorch-metric-learning loss, miner, '
            f'distance, reducer or regularizer. Known names: '
            f'{", ".join(sorted(PML_COMPONENTS.module_dict))}.'
        )
    kwargs = {key: build_pml(value) for key, value in cfg.items()}
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise TypeError(
            f'build_pml: cannot build {cls.__name__} with {sorted(kwargs)}: {error}'
        ) from None
