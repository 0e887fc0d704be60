"""gpo_plugin for pytorch-metric-learning users: adapters only. Our poolers as PML's
``embedder``, the loss builder shared with ``MetricLearningHead`` (PML loss, miner, memory,
GSP's zero-shot term; it lives in ``gpo_plugin.models.losses``), a trainer passing GSP's
attribute vectors to it, a faster ``AccuracyCalculator``, hooks, a class-disjoint sampler and
a runner over the Runner's configs (docs/pml.md)."""

from . import checkpointing  # noqa: F401  (PML's model loading safe, its saving atomic)
from .accuracy import KNNAccuracyCalculator
from .data import ClassDisjointPMLSampler, PMLDataset
from .embedder import FeatureMapTrunk, PoolingEmbedder, feature_map_trunk
from .hooks import GSPPrototypeInit, PoolingWeightsPMLHook, chain_hooks, init_gsp_prototypes
from .losses import MetricLoss, ZeroShotLossWrapper, build_metric_loss
from .trainers import MetricLossOnlyWithAttributes

__all__ = [
    'ClassDisjointPMLSampler',
    'FeatureMapTrunk',
    'GSPPrototypeInit',
    'KNNAccuracyCalculator',
    'MetricLoss',
    'MetricLossOnlyWithAttributes',
    'PMLDataset',
    'PoolingEmbedder',
    'PoolingWeightsPMLHook',
    'ZeroShotLossWrapper',
    'build_metric_loss',
    'chain_hooks',
    'feature_map_trunk',
    'init_gsp_prototypes',
]
