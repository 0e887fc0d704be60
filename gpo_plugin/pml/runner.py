"""Build and run a PML training (trainer, tester, hooks, record-keeper) from a Runner config:
the logic behind ``tools/train_pml.py``.

The config is the one ``tools/train.py`` trains (``configs/dml_*.py``): ``model.backbone`` is
the trunk, ``model.neck`` the pooler of :class:`PoolingEmbedder`, ``model.head`` (a
``MetricLearningHead``) gives the loss through :func:`build_metric_loss`, the dataloaders give
the datasets, batch size and sampler, ``train_cfg`` the epochs and validation interval,
``optim_wrapper`` and ``param_scheduler`` the optimisation. Only PML's own settings sit under
an extra key, ``pml`` (docs/pml.md#toolstrain_pmlpy-and-its-config).
"""

from __future__ import annotations

import os.path as osp
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from mmengine.config import Config, ConfigDict
from pytorch_metric_learning import samplers, testers
from pytorch_metric_learning.utils import logging_presets
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from torch import nn
from torch.utils.data import Dataset

from gpo_plugin.models.losses import build_metric_loss
from gpo_plugin.registry import DATASETS, MODELS

from .accuracy import KNNAccuracyCalculator
from .checkpointing import TrainingStateHook, resume_training
from .data import ClassDisjointPMLSampler, PMLDataset, query_gallery_splits
from .embedder import PoolingEmbedder, feature_map_trunk
from .hooks import PoolingWeightsPMLHook, chain_hooks, init_gsp_prototypes
from .trainers import MetricLossOnlyWithAttributes

REQUIRED = (
    'model.backbone',
    'model.neck',
    'model.head',
    'train_dataloader.dataset',
    'train_dataloader.batch_size',
    'val_dataloader.dataset',
    'train_cfg.max_epochs',
    'optim_wrapper.optimizer',
)
# Keys of mmengine's CosineAnnealingLR etc. that torch's schedulers do not take.
_MMENGINE_SCHEDULER_KEYS = ('by_epoch', 'convert_to_iter_based')


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
        num_epochs = int(self.cfg.train_cfg.max_epochs)
        if self.start_epoch > num_epochs:
            return {}
        self.trainer.train(start_epoch=self.start_epoch, num_epochs=num_epochs)
        split = self.extra.get('validation_split', 'val')
        accuracies = dict(getattr(self.tester, 'all_accuracies', {}).get(split, {}))
        return accuracies


def load_config(path: str, overrides: dict | None = None) -> Config:
    """A Runner config (``configs/dml_*.py`` or a file inheriting one), checked for the keys
    the PML side reads."""
    cfg = Config.fromfile(path)
    if overrides:
        cfg.merge_from_dict(overrides)
    if 'trunk' in cfg or 'embedder' in cfg:
        raise KeyError(
            f'{path}: `trunk` / `embedder` are keys of the old configs/pml schema; '
            'tools/train_pml.py now reads a Runner config: inherit one, e.g. '
            "_base_ = ['../dml_gsp_digits.py'], and put PML-only settings under `pml` "
            '(docs/pml.md).'
        )
    missing = [key for key in REQUIRED if _lookup(cfg, key) is None]
    if missing:
        raise KeyError(
            f'{path}: missing {", ".join(missing)}; tools/train_pml.py reads the Runner config '
            'of tools/train.py (e.g. configs/dml_gsp_digits.py; docs/pml.md).'
        )
    head = cfg.model.head
    if head.get('type') not in ('MetricLearningHead', 'gpo_plugin.MetricLearningHead'):
        raise ValueError(
            f"{path}: model.head.type must be 'MetricLearningHead' (its loss, miner, "
            f'cross_batch_memory and zero_shot_loss become the PML loss), got {head.get("type")!r}.'
        )
    return cfg


def _lookup(cfg: Config, dotted: str):
    node = cfg._cfg_dict if isinstance(cfg, Config) else cfg
    for part in dotted.split('.'):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def pml_settings(cfg: Config) -> ConfigDict:
    """The ``pml`` key of the config (PML-only settings), empty when absent."""
    return ConfigDict(cfg.get('pml') or {})


def build_session(cfg: Config, work_dir: str, resume: bool = False) -> PMLSession:
    """Models, loss, optimizers, datasets, sampler, tester and hooks of one PML run; with
    ``resume`` the latest saved models, optimizers and schedulers of ``work_dir`` are loaded
    and training continues from the next epoch."""
    pml = pml_settings(cfg)
    seed = seed_everything(cfg)
    device = torch.device(pml.get('device') or ('cuda' if torch.cuda.is_available() else 'cpu'))
    embed_cfg = embedder_config(cfg.model)
    models = {
        'trunk': build_trunk(cfg.model.backbone).to(device),
        'embedder': build_embedder(embed_cfg).to(device),
    }
    loss_funcs = {'metric_loss': build_loss(cfg.model.head, embed_cfg['embed_dim']).to(device)}
    optimizers = build_optimizers(cfg.optim_wrapper, models, loss_funcs)
    schedulers = build_schedulers(cfg.get('param_scheduler'), optimizers)
    eval_sets, splits_to_eval = evaluation_splits(build_dataset(cfg.val_dataloader.dataset, cfg))
    validation_split = splits_to_eval[0][0] if splits_to_eval else 'val'
    datasets = {'train': build_dataset(cfg.train_dataloader.dataset, cfg), **eval_sets}
    record_keeper, _, _ = logging_presets.get_record_keeper(
        osp.join(work_dir, 'logs'), osp.join(work_dir, 'tensorboard'), is_new_experiment=not resume
    )
    hooks = logging_presets.get_hook_container(
        record_keeper,
        primary_metric=pml.get('primary_metric', 'mean_average_precision_at_r'),
        log_freq=int(pml.get('log_freq', 10)),
        validation_split_name=validation_split,
    )
    tester = build_tester(pml.get('tester', {}), hooks, device, cfg)
    session_hooks = pml.get('hooks', {})
    model_folder = osp.join(work_dir, 'saved_models')
    end_of_epoch = hooks.end_of_epoch_hook(
        tester,
        eval_sets,
        model_folder,
        test_interval=int(cfg.train_cfg.get('val_interval', 1)),
        patience=session_hooks.get('patience'),
        splits_to_eval=splits_to_eval,
    )
    pictures = None
    if session_hooks.get('pooling_weights', True):
        images, titles = sample_images(
            eval_sets[validation_split], int(session_hooks.get('num_images', 10))
        )
        pictures = PoolingWeightsPMLHook(
            osp.join(work_dir, 'pooling_weights'), images, titles, record_keeper
        )
    batch_size = int(cfg.train_dataloader.batch_size)
    trainer = MetricLossOnlyWithAttributes(
        models=models,
        optimizers=optimizers,
        batch_size=batch_size,
        loss_funcs=loss_funcs,
        mining_funcs={},  # the miner runs inside the loss (build_metric_loss)
        dataset=datasets['train'],
        sampler=build_sampler(
            cfg.train_dataloader.get('sampler'), datasets['train'], batch_size, seed
        ),
        lr_schedulers=schedulers,
        iterations_per_epoch=pml.get('iterations_per_epoch'),
        data_device=device,
        dataloader_num_workers=int(cfg.train_dataloader.get('num_workers', 0)),
        end_of_iteration_hook=hooks.end_of_iteration_hook,
        # Checkpointing (gpo_plugin/pml/checkpointing.py): a resumable state every epoch, last.
        end_of_epoch_hook=chain_hooks(pictures, end_of_epoch, TrainingStateHook(model_folder)),
    )
    start_epoch = 1
    if resume:  # the newest complete state, random states included (after every build step)
        start_epoch = resume_training(trainer, hooks, model_folder, device)
    if start_epoch == 1:
        init_gsp_prototypes(models['trunk'], models['embedder'], _first_batches(trainer), device)
    return PMLSession(
        cfg,
        work_dir,
        trainer,
        tester,
        hooks,
        datasets,
        start_epoch,
        extra=dict(validation_split=validation_split, splits_to_eval=splits_to_eval),
    )


def evaluation_splits(dataset: Dataset) -> tuple[dict[str, Dataset], list | None]:
    """The tester's datasets and ``splits_to_eval``: ``{'val': dataset}`` searched leave-one-out
    (None: PML's default), or, when the samples carry ``is_query`` (In-Shop's test split),
    ``{'query', 'gallery'}`` with ``[('query', ['gallery'])]``."""
    splits = query_gallery_splits(dataset)
    if splits is None:
        return {'val': dataset}, None
    return splits, [('query', ['gallery'])]


def seed_everything(cfg: Config) -> int:
    """Seed torch (weights, sampler), numpy and random (mmcv's augmentations) from
    ``randomness.seed`` (the Runner's key; 0 when unset)."""
    seed = (cfg.get('randomness') or {}).get('seed')
    seed = 0 if seed is None else int(seed)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    return seed


def embedder_config(model: dict) -> dict:
    """``PoolingEmbedder`` kwargs from ``model.neck`` and ``model.head``: the trunk's channels
    are the neck's ``in_channels`` (else the head's), the embedding size the head's
    ``out_channels`` (else the neck's, else the channels)."""
    neck, head = dict(model.neck), dict(model.head)
    in_channels = neck.get('in_channels') or head.get('in_channels')
    if in_channels is None:
        raise ValueError(
            'model: the PML embedder needs the trunk channels; set model.neck.in_channels '
            '(poolers that project, e.g. GSP) or model.head.in_channels.'
        )
    embed_dim = head.get('out_channels') or neck.get('out_channels') or in_channels
    return dict(
        pooler=neck,
        in_channels=int(in_channels),
        embed_dim=int(embed_dim),
        normalize=bool(head.get('normalize', True)),
    )


def build_embedder(cfg: dict) -> PoolingEmbedder:
    """The embedder, its pooler initialised as the Runner initialises the neck."""
    embedder = PoolingEmbedder(**cfg)
    _init_weights(embedder.pooler)
    return embedder


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
    backbone = MODELS.build(dict(cfg, type=name))
    _init_weights(backbone)  # as the Runner does: init_cfg (e.g. pretrained weights) applies
    return feature_map_trunk(backbone)


def _init_weights(module: nn.Module) -> None:
    if callable(getattr(module, 'init_weights', None)):
        module.init_weights()


def build_loss(head: dict, embed_dim: int) -> nn.Module:
    """The loss of ``model.head`` (a ``MetricLearningHead`` config) through the builder the head
    itself uses: PML loss [+ miner] [in CrossBatchMemory] [+ zero-shot term]."""
    return build_metric_loss(
        head['loss'],
        head.get('miner'),
        memory=head.get('cross_batch_memory'),
        zero_shot=head.get('zero_shot_loss'),
        metric_weight=head.get('metric_loss_weight'),
        embedding_size=embed_dim,
    )


def build_optimizers(optim_wrapper: dict, models: dict, loss_funcs: dict) -> dict:
    """``optim_wrapper.optimizer`` (one torch optimizer type and its settings) -> PML's
    ``{'trunk_optimizer', 'embedder_optimizer', 'metric_loss_optimizer'}``, one per part with
    trainable parameters (``metric_loss`` holds the zero-shot class embeddings). Element-wise
    optimizers (SGD, Adam, AdamW, ...) step each parameter as one optimizer over all would."""
    unsupported = sorted(set(optim_wrapper) - {'type', 'optimizer'})
    if unsupported or optim_wrapper.get('type', 'OptimWrapper') != 'OptimWrapper':
        raise ValueError(
            f'optim_wrapper: the PML side supports type=OptimWrapper with `optimizer` only, got '
            f'{sorted(optim_wrapper)}; remove {unsupported or ["type"]} for tools/train_pml.py.'
        )
    opt_cfg = dict(optim_wrapper['optimizer'])
    cls = getattr(torch.optim, opt_cfg.pop('type'))
    optimizers = {}
    for name, part in {**models, **loss_funcs}.items():
        params = [p for p in part.parameters() if p.requires_grad]
        if params:
            optimizers[f'{name}_optimizer'] = cls(params, **opt_cfg)
    return optimizers


def build_schedulers(cfg: list | dict | None, optimizers: dict) -> dict:
    """``param_scheduler = [dict(type='CosineAnnealingLR', T_max=12, by_epoch=True)]``: one
    epoch-wise ``torch.optim.lr_scheduler`` of the same name per optimizer (PML steps it after
    each epoch, as mmengine steps an epoch-based one)."""
    if not cfg:
        return {}
    items = [cfg] if isinstance(cfg, dict) else list(cfg)
    if len(items) != 1 or not items[0].get('by_epoch', True) or 'begin' in items[0]:
        raise ValueError(
            'param_scheduler: the PML side takes one epoch-wise scheduler without begin/end '
            f'(e.g. [dict(type="CosineAnnealingLR", T_max=12, by_epoch=True)]), got {cfg}.'
        )
    out = {}
    for key, optimizer in optimizers.items():
        kwargs = {k: v for k, v in items[0].items() if k not in _MMENGINE_SCHEDULER_KEYS}
        if 'end' in kwargs:
            raise ValueError('param_scheduler: `end` is not supported on the PML side.')
        cls = getattr(torch.optim.lr_scheduler, kwargs.pop('type'))
        out[key.replace('_optimizer', '_scheduler_by_epoch')] = cls(optimizer, **kwargs)
    return out


def build_dataset(cfg: Any, root_cfg: Config) -> Dataset:
    """An instance passes through; a config whose type is one of our readers is wrapped in
    :class:`PMLDataset` (normalised with ``mean``/``std``/``to_rgb`` of
    ``model.data_preprocessor``); a class or callable ``type`` is called with the other keys
    (any dataset returning (image, label))."""
    if isinstance(cfg, Dataset):
        return cfg
    cfg = dict(cfg)
    kind = cfg['type']
    if isinstance(kind, str):
        if DATASETS.get(kind) is None:
            raise KeyError(f'dataset type {kind!r} is not a gpo_plugin / mmpretrain dataset.')
        preprocessor = root_cfg.model.get('data_preprocessor') or {}
        norm = {k: preprocessor[k] for k in ('mean', 'std') if k in preprocessor}
        norm['to_rgb'] = bool(preprocessor.get('to_rgb') or preprocessor.get('bgr_to_rgb'))
        return PMLDataset(cfg, **norm)
    cfg.pop('type')
    return kind(**cfg)


def build_sampler(cfg: dict | None, dataset: Dataset, batch_size: int, seed: int | None = None):
    """``train_dataloader.sampler``: ``ClassDisjointSampler`` (-> ``ClassDisjointPMLSampler``
    with its ``num_per_class``), ``MPerClassSampler`` (PML's, with ``m``), or mmengine's
    ``DefaultSampler`` / None (PML's trainer shuffles)."""
    if not cfg:
        return None
    cfg = dict(cfg)
    kind = cfg.pop('type')
    labels = _labels(dataset)
    if kind in ('ClassDisjointSampler', 'ClassDisjointPMLSampler'):
        return ClassDisjointPMLSampler(
            labels, batch_size=batch_size, num_per_class=int(cfg.get('num_per_class', 4)), seed=seed
        )
    if kind == 'MPerClassSampler':
        cfg.pop('batch_size', None)
        cfg.setdefault('length_before_new_iter', len(labels) // batch_size * batch_size)
        return samplers.MPerClassSampler(labels, batch_size=batch_size, **cfg)
    if kind == 'DefaultSampler':
        return None
    raise KeyError(
        f'train_dataloader.sampler.type {kind!r}: use ClassDisjointSampler, MPerClassSampler or '
        'DefaultSampler with tools/train_pml.py.'
    )


def build_tester(cfg: dict, hooks, device, root_cfg: Config):
    """PML's ``GlobalEmbeddingSpaceTester`` with ``pml.tester`` kwargs (batch size: the
    ``val_dataloader``'s by default) and our ``KNNAccuracyCalculator``."""
    cfg = dict(cfg)
    cfg.setdefault('batch_size', int(root_cfg.val_dataloader.get('batch_size', 32)))
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
        dataloader_num_workers=int(root_cfg.val_dataloader.get('num_workers', 0)),
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
