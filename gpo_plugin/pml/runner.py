"""Build and run a PML training (trainer, tester, hooks, record-keeper) from a config file;
the logic behind ``tools/train_pml.py`` (config format: docs/pml.md)."""

from __future__ import annotations

import os.path as osp
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from mmengine.config import Config
from pytorch_metric_learning import samplers, testers
from pytorch_metric_learning.utils import logging_presets
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from torch import nn
from torch.utils.data import Dataset

from gpo_plugin.registry import DATASETS, MODELS, build_pml

from .accuracy import KNNAccuracyCalculator
from .checkpointing import TrainingStateHook, resume_training
from .data import ClassDisjointPMLSampler, PMLDataset
from .embedder import PoolingEmbedder, feature_map_trunk
from .hooks import PoolingWeightsPMLHook, chain_hooks, init_gsp_prototypes
from .losses import ZeroShotLossWrapper
from .trainers import MetricLossOnlyWithAttributes

REQUIRED = ('trunk', 'embedder', 'loss', 'train_dataset', 'val_dataset', 'batch_size', 'num_epochs')


@dataclass
class PMLSession:
    """Everything built from a config; ``run()`` trains (from ``start_epoch``) and returns the
    last validation accuracies."""

    cfg: Config
    work_dir: str
    trainer: Any
    tester: Any
    hooks: Any
    datasets: dict[str, Dataset]
    start_epoch: int = 1
    extra: dict = field(default_factory=dict)

    @property
    def model_folder(self) -> str:
        return osp.join(self.work_dir, 'saved_models')

    def run(self) -> dict[str, float]:
        num_epochs = int(self.cfg.num_epochs)
        if self.start_epoch > num_epochs:
            return {}
        self.trainer.train(start_epoch=self.start_epoch, num_epochs=num_epochs)
        accuracies = dict(getattr(self.tester, 'all_accuracies', {}).get('val', {}))
        return accuracies


def load_config(path: str, overrides: dict | None = None) -> Config:
    cfg = Config.fromfile(path)
    if overrides:
        cfg.merge_from_dict(overrides)
    missing = [key for key in REQUIRED if key not in cfg]
    if missing:
        raise KeyError(
            f'{path}: missing {", ".join(missing)}; a PML config needs {", ".join(REQUIRED)} '
            '(see configs/pml/digits_gsp.py and docs/pml.md).'
        )
    return cfg


def build_session(cfg: Config, work_dir: str, resume: bool = False) -> PMLSession:
    """Models, losses, optimizers, datasets, sampler, tester and hooks of one PML run; with
    ``resume`` the latest saved models, optimizers and schedulers of ``work_dir`` are loaded
    and training continues from the next epoch."""
    seed = int(cfg.get('seed', 0))
    # torch (weights, sampler), numpy and random (mmcv's augmentations) alike.
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    device = torch.device(cfg.get('device') or ('cuda' if torch.cuda.is_available() else 'cpu'))
    embed_cfg = dict(cfg.embedder)
    models = {
        'trunk': build_trunk(cfg.trunk).to(device),
        'embedder': PoolingEmbedder(**embed_cfg).to(device),
    }
    metric_loss, miner = build_loss(cfg, int(embed_cfg['embed_dim']))
    loss_funcs = {'metric_loss': metric_loss.to(device)}
    optimizers = build_optimizers(cfg.get('optimizers', {}), models, loss_funcs)
    schedulers = build_schedulers(cfg.get('lr_scheduler'), optimizers)
    datasets = {
        'train': build_dataset(cfg.train_dataset, cfg),
        'val': build_dataset(cfg.val_dataset, cfg),
    }
    record_keeper, _, _ = logging_presets.get_record_keeper(
        osp.join(work_dir, 'logs'), osp.join(work_dir, 'tensorboard'), is_new_experiment=not resume
    )
    hooks = logging_presets.get_hook_container(
        record_keeper,
        primary_metric=cfg.get('primary_metric', 'mean_average_precision_at_r'),
        log_freq=int(cfg.get('log_freq', 10)),
    )
    tester = build_tester(cfg.get('tester', {}), hooks, device, cfg)
    session_hooks = cfg.get('hooks', {})
    model_folder = osp.join(work_dir, 'saved_models')
    end_of_epoch = hooks.end_of_epoch_hook(
        tester,
        {'val': datasets['val']},
        model_folder,
        test_interval=int(session_hooks.get('test_interval', 1)),
        patience=session_hooks.get('patience'),
    )
    pictures = None
    if session_hooks.get('pooling_weights', True):
        images, titles = sample_images(datasets['val'], int(session_hooks.get('num_images', 10)))
        pictures = PoolingWeightsPMLHook(
            osp.join(work_dir, 'pooling_weights'), images, titles, record_keeper
        )
    trainer = MetricLossOnlyWithAttributes(
        models=models,
        optimizers=optimizers,
        batch_size=int(cfg.batch_size),
        loss_funcs=loss_funcs,
        mining_funcs={'tuple_miner': miner} if miner is not None else {},
        dataset=datasets['train'],
        sampler=build_sampler(cfg.get('sampler'), datasets['train'], int(cfg.batch_size), seed),
        lr_schedulers=schedulers,
        iterations_per_epoch=cfg.get('iterations_per_epoch'),
        data_device=device,
        dataloader_num_workers=int(cfg.get('num_workers', 0)),
        end_of_iteration_hook=hooks.end_of_iteration_hook,
        # Checkpointing (gpo_plugin/pml/checkpointing.py): a resumable state every epoch, last.
        end_of_epoch_hook=chain_hooks(pictures, end_of_epoch, TrainingStateHook(model_folder)),
    )
    start_epoch = 1
    if resume:  # the newest complete state, random states included (after every build step)
        start_epoch = resume_training(trainer, hooks, model_folder, device)
    if start_epoch == 1:
        init_gsp_prototypes(models['trunk'], models['embedder'], _first_batches(trainer), device)
    return PMLSession(cfg, work_dir, trainer, tester, hooks, datasets, start_epoch)


def build_trunk(cfg: dict | nn.Module) -> nn.Module:
    """``dict(type='torchvision.resnet50', weights=None)``, ``dict(type='timm.resnet50')`` or
    an mmpretrain backbone config; classifiers lose their pooling and fc."""
    if isinstance(cfg, nn.Module):
        return feature_map_trunk(cfg)
    cfg = dict(cfg)
    name = cfg.pop('type')
    if isinstance(name, str) and name.startswith('torchvision.'):
        import torchvision

        return feature_map_trunk(getattr(torchvision.models, name.split('.', 1)[1])(**cfg))
    if isinstance(name, str) and name.startswith('timm.'):
        import timm

        return feature_map_trunk(timm.create_model(name.split('.', 1)[1], **cfg))
    return feature_map_trunk(MODELS.build(dict(cfg, type=name)))


def build_loss(cfg: Config, embed_dim: int):
    """The metric loss (in ``CrossBatchMemory`` / ``ZeroShotLossWrapper`` when configured) and
    the miner the trainer should run (None when the memory mines)."""
    loss = build_pml(cfg.loss)
    miner = build_pml(cfg.get('miner'))
    memory = cfg.get('cross_batch_memory')
    if memory:
        loss = build_pml(
            dict(
                type='CrossBatchMemory', loss=loss, embedding_size=embed_dim, miner=miner, **memory
            )
        )
        miner = None
    zero_shot = cfg.get('zero_shot')
    if zero_shot:
        zero_shot = dict(zero_shot)
        zero_shot.setdefault('embed_dim', embed_dim)
        loss = ZeroShotLossWrapper(loss, **zero_shot)
    return loss, miner


def build_optimizers(cfg: dict, models: dict, loss_funcs: dict) -> dict:
    """``dict(trunk=dict(type='AdamW', lr=...), embedder=..., metric_loss=...)`` ->
    PML's ``{'trunk_optimizer': ..., ...}`` (``metric_loss`` holds the zero-shot class
    embeddings); parts with no trainable parameters get none."""
    parts = {**models, **loss_funcs}
    optimizers = {}
    for name, opt_cfg in cfg.items():
        if opt_cfg is None:
            continue
        if name not in parts:
            raise KeyError(
                f'optimizers.{name}: no such part; use one of {", ".join(sorted(parts))}.'
            )
        params = [p for p in parts[name].parameters() if p.requires_grad]
        if params:
            opt_cfg = dict(opt_cfg)
            optimizers[f'{name}_optimizer'] = getattr(torch.optim, opt_cfg.pop('type'))(
                params, **opt_cfg
            )
    return optimizers


def build_schedulers(cfg: dict | None, optimizers: dict) -> dict:
    """One epoch-wise ``torch.optim.lr_scheduler`` per optimizer, e.g.
    ``lr_scheduler = dict(type='CosineAnnealingLR', T_max=12)``."""
    if not cfg:
        return {}
    out = {}
    for key, optimizer in optimizers.items():
        kwargs = dict(cfg)
        cls = getattr(torch.optim.lr_scheduler, kwargs.pop('type'))
        out[key.replace('_optimizer', '_scheduler_by_epoch')] = cls(optimizer, **kwargs)
    return out


def build_dataset(cfg: Any, root_cfg: Config) -> Dataset:
    """An instance passes through; a config whose type is one of our readers is wrapped in
    :class:`PMLDataset` (normalised with ``mean``/``std`` of the config); a class or callable
    ``type`` is called with the other keys (any dataset returning (image, label))."""
    if isinstance(cfg, Dataset):
        return cfg
    cfg = dict(cfg)
    kind = cfg['type']
    if isinstance(kind, str):
        if DATASETS.get(kind) is None:
            raise KeyError(f'dataset type {kind!r} is not a gpo_plugin / mmpretrain dataset.')
        norm = {key: root_cfg[key] for key in ('mean', 'std') if key in root_cfg}
        return PMLDataset(cfg, **norm)
    cfg.pop('type')
    return kind(**cfg)


def build_sampler(cfg: dict | None, dataset: Dataset, batch_size: int, seed: int | None = None):
    """``dict(type='ClassDisjointPMLSampler', num_per_class=8)`` or
    ``dict(type='MPerClassSampler', m=4, length_before_new_iter=...)`` over the dataset's labels."""
    if not cfg:
        return None
    cfg = dict(cfg)
    kind = cfg.pop('type')
    labels = _labels(dataset)
    if kind == 'ClassDisjointPMLSampler':
        cfg.setdefault('seed', seed)
        return ClassDisjointPMLSampler(labels, batch_size=batch_size, **cfg)
    if kind == 'MPerClassSampler':
        cfg.setdefault('length_before_new_iter', len(labels) // batch_size * batch_size)
        return samplers.MPerClassSampler(labels, batch_size=batch_size, **cfg)
    raise KeyError(f"sampler type {kind!r}: use 'ClassDisjointPMLSampler' or 'MPerClassSampler'.")


def build_tester(cfg: dict, hooks, device, root_cfg: Config):
    cfg = dict(cfg)
    calculator = dict(cfg.pop('accuracy_calculator', {}))
    # type='AccuracyCalculator' selects PML's own (e.g. to compare); ours by default.
    kind = calculator.pop('type', 'KNNAccuracyCalculator')
    calculator_cls = AccuracyCalculator if kind == 'AccuracyCalculator' else KNNAccuracyCalculator
    calculator.setdefault('k', 'max_bin_count')
    calculator.setdefault(
        'include', ('precision_at_1', 'r_precision', 'mean_average_precision_at_r')
    )
    return testers.GlobalEmbeddingSpaceTester(
        end_of_testing_hook=hooks.end_of_testing_hook,
        accuracy_calculator=calculator_cls(device=device, **calculator),
        data_device=device,
        dataloader_num_workers=int(root_cfg.get('num_workers', 0)),
        **cfg,
    )


def sample_images(dataset: Dataset, count: int):
    """The first image of each of up to ``count`` classes (for GSP's weight pictures)."""
    labels = _labels(dataset)
    picked = [int((labels == c).nonzero()[0]) for c in torch.unique(labels)[:count]]
    images = torch.stack([dataset[i][0] for i in picked])
    names = getattr(getattr(dataset, 'dataset', None), 'metainfo', {}).get('classes')
    return images, [str(names[labels[i]] if names else int(labels[i])) for i in picked]


def _labels(dataset: Dataset) -> torch.Tensor:
    labels = getattr(dataset, 'labels', None)
    if labels is None and hasattr(dataset, 'targets'):
        labels = dataset.targets
    if labels is None:
        raise TypeError(
            f'{type(dataset).__name__}: a sampler needs the labels; give the dataset a `labels` '
            'attribute (N,) or use one of our readers.'
        )
    return torch.as_tensor(labels).reshape(-1)


def _first_batches(trainer):
    from pytorch_metric_learning.utils import common_functions as c_f

    return c_f.get_train_dataloader(
        trainer.dataset, trainer.batch_size, None, 0, trainer.collate_fn
    )
