"""gpo_plugin for pytorch-metric-learning users: our poolers as PML's ``embedder``, GSP's
zero-shot loss around any PML loss, a trainer feeding it, a faster ``AccuracyCalculator``,
hooks, a class-disjoint sampler and a config-driven runner (docs/pml.md)."""

from . import checkpointing  # noqa: F401  (PML's model loading safe, its saving atomic)
from .accuracy import KNNAccuracyCalculator
from .data import ClassDisjointPMLSampler, PMLDataset
from .embedder import FeatureMapTrunk, PoolingEmbedder, feature_map_trunk
from .hooks import GSPPrototypeInit, PoolingWeightsPMLHook, chain_hooks, init_gsp_prototypes
from .losses import ZeroShotLossWrapper
from .trainers import MetricLossOnlyWithAttributes

__all__ = [
    'ClassDisjointPMLSampler',
    'FeatureMapTrunk',
    'GSPPrototypeInit',
    'KNNAccuracyCalculator',
    'MetricLossOnlyWithAttributes',
    'PMLDataset',
    'PoolingEmbedder',
    'PoolingWeightsPMLHook',
    'ZeroShotLossWrapper',
    'chain_hooks',
    'feature_map_trunk',
    'init_gsp_prototypes',
]
