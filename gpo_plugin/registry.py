"""Registries of gpo_plugin: the seam between this package and the frameworks.

Each registry is a child of mmpretrain's (scope ``'gpo_plugin'``), so a config with
``default_scope='gpo_plugin'`` sees everything mmpretrain and mmengine register, and
``type='gpo_plugin.GPO'`` works from any scope. Every module registered here is also
exported into the parent registry under the same name (unless that name is already
taken there), so ``neck=dict(type='GPO')`` works unchanged inside a stock mmpretrain
config whose ``default_scope`` is ``'mmpretrain'``.
"""

from __future__ import annotations

import difflib
import logging

from mmengine.logging import print_log
from mmengine.registry import Registry
from mmpretrain import registry as mmpretrain_registry
from mmpretrain.registry import DATA_SAMPLERS as MMPRETRAIN_DATA_SAMPLERS
from mmpretrain.registry import DATASETS as MMPRETRAIN_DATASETS
from mmpretrain.registry import HOOKS as MMPRETRAIN_HOOKS
from mmpretrain.registry import METRICS as MMPRETRAIN_METRICS
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from mmpretrain.registry import TRANSFORMS as MMPRETRAIN_TRANSFORMS

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


def _child(name: str, parent: Registry, location: str) -> ExportingRegistry:
    return ExportingRegistry(name, parent=parent, scope=SCOPE, locations=[location])


MODELS = _child('model', MMPRETRAIN_MODELS, 'gpo_plugin.models')
DATASETS = _child('dataset', MMPRETRAIN_DATASETS, 'gpo_plugin.datasets')
DATA_SAMPLERS = _child('data sampler', MMPRETRAIN_DATA_SAMPLERS, 'gpo_plugin.datasets')
TRANSFORMS = _child('transform', MMPRETRAIN_TRANSFORMS, 'gpo_plugin.datasets')
METRICS = _child('metric', MMPRETRAIN_METRICS, 'gpo_plugin.evaluation')
HOOKS = _child('hook', MMPRETRAIN_HOOKS, 'gpo_plugin.engine')

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
