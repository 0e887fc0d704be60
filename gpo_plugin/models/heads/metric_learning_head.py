"""Metric-learning head: a PML loss (+ miner, + cross-batch memory) on pooled embeddings, plus
GSP's zero-shot regularisation on its attribute vectors."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.structures import DataSample
from torch import Tensor, nn

from gpo_plugin.models.losses import MetricLoss, ZeroShotLossWrapper, build_metric_loss
from gpo_plugin.registry import MODELS


@MODELS.register_module()
class MetricLearningHead(BaseModule):
    """Embeds the neck output and applies a pytorch-metric-learning loss.

    The loss is assembled by :func:`build_metric_loss` (the builder PML users call too):
    ``loss``/``miner`` name PML classes (resolved by :func:`build_pml`, never against
    ``MODELS``). With ``cross_batch_memory=dict(memory_size=...)`` the loss is wrapped in PML's
    ``CrossBatchMemory`` (the miner then mines against the memory). With ``zero_shot_loss`` the
    model must pass GSP's attribute vectors to :meth:`loss`; the total is then
    ``metric_loss_weight * L_metric + L_zsr`` (the zero-shot loss carries its own weight, 0.1).

    Normalisation: the loss gets the (projected) embeddings as they are, PML's distances
    normalise them themselves (``normalize_embeddings=True``, their default); :meth:`predict`
    returns them l2-normalised (``normalize``). ``PoolingEmbedder`` follows the same rule.

    In a multi-process run the PML loss and miner go through PML's ``DistributedLossWrapper``
    and ``DistributedMinerWrapper`` (``MetricLoss`` with ``gather=None``): each rank gathers
    the embeddings and labels of all ranks (its own with gradient, the others' without) and
    computes the loss over the global batch,
    times the world size, so that DDP's gradient average gives the single-process gradient
    (the logged ``loss_metric`` is therefore world size x the global-batch loss). With
    cross-batch memory, every rank enqueues the whole global batch, so all ranks hold the
    same memory (rows in another order) and ``memory_size`` counts samples of the global
    batch. PML's scaling also multiplies the gradient of a loss's own parameters (proxies of
    ProxyAnchor, ArcFace weights, ...) by the world size; Adam-type optimisers are invariant
    to that, SGD sees a world-size times larger LR on them.

    Args:
        loss: PML loss config, e.g. ``dict(type='ContrastiveLoss', pos_margin=0, neg_margin=0.5)``.
        miner: PML miner config, or None.
        cross_batch_memory: kwargs of PML's ``CrossBatchMemory`` except loss/miner/embedding_size
            (e.g. ``dict(memory_size=1024)``), or None.
        zero_shot_loss: a ``ZeroShotLoss`` config (``MODELS``), or None.
        metric_loss_weight: weight of the PML loss. Defaults to 0.9 with a zero-shot loss, else 1.
        in_channels: size of the neck output; with ``out_channels`` adds a Linear projection
            (for poolers without one, e.g. average pooling). Needed with cross-batch memory.
        out_channels: embedding size after the optional projection.
        normalize: l2-normalise the embeddings returned by :meth:`predict`. Defaults to True.
        init_cfg: mmengine initialisation config.

    Shapes:
        feats: tuple of (B, C) (the last one is used) -> embeddings (B, D).
    """

    def __init__(
        self,
        loss: dict,
        miner: dict | None = None,
        cross_batch_memory: dict | None = None,
        zero_shot_loss: dict | None = None,
        metric_loss_weight: float | None = None,
        in_channels: int | None = None,
        out_channels: int | None = None,
        normalize: bool = True,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.projection = (
            nn.Linear(in_channels, out_channels)
            if in_channels is not None and out_channels is not None
            else None
        )
        self.criterion = build_metric_loss(
            loss,
            miner,
            memory=cross_batch_memory,
            zero_shot=zero_shot_loss,
            metric_weight=metric_loss_weight,
            embedding_size=out_channels or in_channels,
        )
        self.normalize = normalize
        self._register_load_state_dict_pre_hook(self._rename_legacy_keys)

    @property
    def needs_attributes(self) -> bool:
        return isinstance(self.criterion, ZeroShotLossWrapper)

    @property
    def metric_loss(self) -> nn.Module:
        """The PML loss (a ``CrossBatchMemory`` with memory), read-only."""
        return self._metric().loss

    @property
    def zero_shot_loss(self) -> nn.Module | None:
        """The ``ZeroShotLoss``, or None; read-only."""
        return self.criterion.zero_shot if self.needs_attributes else None

    @property
    def metric_loss_weight(self) -> float:
        return self._metric().loss_weight

    def _metric(self) -> MetricLoss:
        return self.criterion.loss if self.needs_attributes else self.criterion

    def _rename_legacy_keys(self, state_dict: dict, prefix: str, *args) -> None:
        """Checkpoints from before ``build_metric_loss`` held ``metric_loss.*`` and
        ``zero_shot_loss.*``; map them onto the criterion's keys."""
        metric = 'criterion.loss.loss.' if self.needs_attributes else 'criterion.loss.'
        renames = (
            (prefix + 'metric_loss.', prefix + metric),
            (prefix + 'zero_shot_loss.', prefix + 'criterion.zero_shot.'),
        )
        for key in [k for k in state_dict if k.startswith(prefix)]:
            for old, new in renames:
                if key.startswith(old):
                    state_dict[new + key[len(old) :]] = state_dict.pop(key)

    def forward(self, feats: Sequence[Tensor] | Tensor) -> Tensor:
        x = feats[-1] if isinstance(feats, tuple | list) else feats
        if x.dim() != 2:
            raise ValueError(
                f'MetricLearningHead: expects pooled (B, C) features from the neck, '
                f'got {tuple(x.shape)}; add a pooling neck (e.g. GSP, AvgPooling).'
            )
        return self.projection(x) if self.projection is not None else x

    def loss(
        self,
        feats: Sequence[Tensor],
        data_samples: list[DataSample],
        attributes: Sequence[Tensor] | Tensor | None = None,
    ) -> dict[str, Tensor]:
        embeddings = self(feats)
        labels = torch.cat([s.gt_label.reshape(-1) for s in data_samples]).to(embeddings.device)
        if not self.needs_attributes:
            return {'loss_metric': self.criterion(embeddings, labels)}
        if attributes is None:
            raise ValueError(
                'MetricLearningHead: zero_shot_loss needs attribute vectors, '
                "which only a GSP neck gives; use model.type='MetricLearner' "
                "with neck.type='GSP', or remove head.zero_shot_loss."
            )
        attr = attributes[-1] if isinstance(attributes, tuple | list) else attributes
        return self.criterion.terms(embeddings, labels, attr)

    def predict(
        self, feats: Sequence[Tensor], data_samples: list[DataSample | None] | None = None
    ) -> list[DataSample]:
        embeddings = self(feats).detach()
        if self.normalize:
            embeddings = F.normalize(embeddings, dim=1)
        if data_samples is None:
            data_samples = [None] * embeddings.shape[0]
        out = []
        for embedding, sample in zip(embeddings, data_samples, strict=True):
            sample = DataSample() if sample is None else sample
            sample.set_field(embedding, 'embedding', field_type='data')
            out.append(sample)
        return out
