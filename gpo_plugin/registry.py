"""Registries of gpo_plugin: every seam between this package and the frameworks.

Each registry is a child of mmpretrain's (or mmengine's, where mmpretrain has none), with
scope ``'gpo_plugin'``, so a config with ``default_scope='gpo_plugin'`` sees everything
mmpretrain and mmengine register, and ``type='gpo_plugin.GPO'`` works from any scope. Every
module registered here is also exported into the parent registry under the same name (unless
that name is already taken there), so ``neck=dict(type='GPO')`` works unchanged inside a stock
mmpretrain config whose ``default_scope`` is ``'mmpretrain'``.

The seams (docs/architecture.md):

- ``MODELS``, ``DATASETS``, ``DATA_SAMPLERS``, ``TRANSFORMS``, ``METRICS``, ``HOOKS``: our
  modules, built by mmengine's Runner from configs;
- ``FUNCTIONS``: collate functions (``collate_fn=dict(type='vse_collate')``);
- ``TOKENIZERS``: caption tokenisers of the VSE∞ datasets;
- ``PML_COMPONENTS``: pytorch-metric-learning's losses, miners, distances, reducers and
  regularizers by class name, built (nested dicts too) by :func:`build_pml`;
- ``PASS_THROUGH_REGISTRIES``: empty children of mmpretrain's other registries.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from typing import Any

from mmengine.logging import print_log
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import Registry
from mmpretrain import registry as mmpretrain_registry
from mmpretrain.registry import DATA_SAMPLERS as MMPRETRAIN_DATA_SAMPLERS
from mmpretrain.registry import DATASETS as MMPRETRAIN_DATASETS
from mmpretrain.registry import HOOKS as MMPRETRAIN_HOOKS
from mmpretrain.registry import METRICS as MMPRETRAIN_METRICS
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from mmpretrain.registry import TOKENIZER as MMPRETRAIN_TOKENIZER
from mmpretrain.registry import TRANSFORMS as MMPRETRAIN_TRANSFORMS
from pytorch_metric_learning import distances, losses, miners, reducers, regularizers

SCOPE = 'gpo_plugin'


class ExportingRegistry(Registry):
    """A child registry that also registers each module in its parent, and names the
    close matches when a type is not found."""

    def get(self, key: str):
        found = super().get(key)
        if found is None and isinstance(key, str):
            print_log(self.missing_hint(key), logger='current', level=logging.WARNING)
        return found

    def missing_hint(self, key: str) -> str:
        """What is registered here, and the names closest to ``key``."""
        ours = sorted(self._module_dict)
        everything = set(ours)
        registry = self.parent
        while registry is not None:
            everything.update(registry._module_dict)
            registry = registry.parent
        close = difflib.get_close_matches(self.split_scope_key(key)[1], everything, n=5)
        return (
            f'{key!r} is not in the {self.scope}::{self.name} registry nor its parents. '
            f'Did you mean: {", ".join(close) or "(no close match)"}? '
            f'Registered by {self.scope}: {", ".join(ours)}.'
        )

    def _register_module(self, module, module_name=None, force: bool = False) -> None:
        super()._register_module(module, module_name, force)
        if module_name is None:
            names = [module.__name__]
        elif isinstance(module_name, str):
            names = [module_name]
        else:
            names = list(module_name)
        for name in names:
            if name not in self.parent._module_dict:
                self.parent._register_module(module, name)

    def register_local_alias(self, name: str, module: type) -> None:
        """Register ``module`` under ``name`` in this scope only (not exported to the parent):
        for deprecated names kept for old configs of this package."""
        Registry._register_module(self, module, name)


def _child(name: str, parent: Registry, location: str) -> ExportingRegistry:
    return ExportingRegistry(name, parent=parent, scope=SCOPE, locations=[location])


MODELS = _child('model', MMPRETRAIN_MODELS, 'gpo_plugin.models')
DATASETS = _child('dataset', MMPRETRAIN_DATASETS, 'gpo_plugin.datasets')
DATA_SAMPLERS = _child('data sampler', MMPRETRAIN_DATA_SAMPLERS, 'gpo_plugin.datasets')
TRANSFORMS = _child('transform', MMPRETRAIN_TRANSFORMS, 'gpo_plugin.datasets')
METRICS = _child('metric', MMPRETRAIN_METRICS, 'gpo_plugin.evaluation')
HOOKS = _child('hook', MMPRETRAIN_HOOKS, 'gpo_plugin.engine')
FUNCTIONS = _child('function', MMENGINE_FUNCTIONS, 'gpo_plugin.datasets')
TOKENIZERS = _child('tokenizer', MMPRETRAIN_TOKENIZER, 'gpo_plugin.datasets')


def build_pml(cfg: dict | Any, registry: Registry | None = None, default_args: dict | None = None):
    """Build a PML object (and the PML objects nested in it) from a dict with ``type``.

    ``type`` is a PML class name (``'ContrastiveLoss'`` always means PML's, never the VSE++ loss
    ``VSEContrastiveLoss`` of ``MODELS``) or a class. Non-dict values pass through, so built objects are accepted:
    ``dict(type='TripletMarginLoss', distance=dict(type='CosineSimilarity'))``.
    """
    registry = PML_COMPONENTS if registry is None else registry
    if isinstance(cfg, list | tuple):
        return type(cfg)(build_pml(item, registry) for item in cfg)
    if not isinstance(cfg, dict) or 'type' not in cfg:
        return cfg
    cfg = {**(default_args or {}), **cfg}
    name = cfg.pop('type')
    cls = name if inspect.isclass(name) else registry.get(name)
    if cls is None:
        raise KeyError(
            f'{name!r} is not a pytorch-metric-learning loss, miner, distance, reducer or '
            f'regularizer. Known names: {", ".join(sorted(registry.module_dict))}.'
        )
    kwargs = {key: build_pml(value, registry) for key, value in cfg.items()}
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise TypeError(f'cannot build {cls.__name__} with {sorted(kwargs)}: {error}') from None


PML_COMPONENTS = Registry('pytorch-metric-learning component', scope=SCOPE, build_func=build_pml)
for _module in (losses, miners, distances, reducers, regularizers):
    for _name, _cls in vars(_module).items():
        if inspect.isclass(_cls) and not _name.startswith('_') and _name not in PML_COMPONENTS:
            PML_COMPONENTS.register_module(name=_name, module=_cls)

# The rest of mmpretrain's registries get an empty 'gpo_plugin' child each, so that with
# default_scope='gpo_plugin' mmengine finds this scope in every registry tree (instead of
# warning and falling back) and builds optimizers, schedulers, loops, visualisers, ... as
# usual through the parents.
_PASS_THROUGH = (
    'RUNNERS',
    'RUNNER_CONSTRUCTORS',
    'LOOPS',
    'LOG_PROCESSORS',
    'OPTIMIZERS',
    'OPTIM_WRAPPERS',
    'OPTIM_WRAPPER_CONSTRUCTORS',
    'PARAM_SCHEDULERS',
    'MODEL_WRAPPERS',
    'WEIGHT_INITIALIZERS',
    'BATCH_AUGMENTS',
    'TASK_UTILS',
    'EVALUATORS',
    'VISUALIZERS',
    'VISBACKENDS',
)
PASS_THROUGH_REGISTRIES = {
    name: Registry(
        getattr(mmpretrain_registry, name).name,
        parent=getattr(mmpretrain_registry, name),
        scope=SCOPE,
    )
    for name in _PASS_THROUGH
}
