"""The metric-learning model end to end: PML bridge, head, MetricLearner, and Runner runs of the
digits configs (train, test, resume)."""

import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.structures import DataSample
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from gpo_plugin.evaluation.mlrc import concatenated_metrics, extract_embeddings
from gpo_plugin.models import MetricLearner
from gpo_plugin.models.heads import MetricLearningHead
from gpo_plugin.models.necks import GSP
from gpo_plugin.registry import MODELS, build_pml


def test_pml_bridge_resolves_names_against_pml_not_models():
    loss = build_pml(
        dict(
            type='ContrastiveLoss',
            pos_margin=0,
            neg_margin=0.5,
            distance=dict(type='CosineSimilarity'),
        )
    )
    assert type(loss) is pml_losses.ContrastiveLoss and loss.neg_margin == 0.5
    assert type(loss.distance).__name__ == 'CosineSimilarity'
    assert MODELS.get('ContrastiveLoss') is not pml_losses.ContrastiveLoss
    assert type(build_pml(dict(type='MultiSimilarityMiner', epsilon=0.2))) is (
        pml_miners.MultiSimilarityMiner
    )
    with pytest.raises(KeyError, match='not a pytorch-metric-learning'):
        build_pml(dict(type='NoSuchLoss'))
    with pytest.raises(TypeError, match='cannot build ContrastiveLoss'):
        build_pml(dict(type='ContrastiveLoss', no_such_argument=1))


def _samples(labels):
    return [DataSample().set_gt_label(int(y)) for y in labels]


def test_head_loss_equals_pml_loss_with_miner():
    head = MetricLearningHead(
        loss=dict(type='TripletMarginLoss', margin=0.1),
        miner=dict(type='MultiSimilarityMiner', epsilon=0.1),
    )
    embeddings, labels = torch.randn(8, 6), torch.arange(8) // 2
    ours = head.loss((embeddings,), _samples(labels))['loss_metric']
    miner = pml_miners.MultiSimilarityMiner(epsilon=0.1)
    theirs = pml_losses.TripletMarginLoss(margin=0.1)(embeddings, labels, miner(embeddings, labels))
    torch.testing.assert_close(ours, theirs)


def test_head_with_memory_zero_shot_and_predict():
    head = MetricLearningHead(
        loss=dict(type='ContrastiveLoss', pos_margin=0, neg_margin=0.5),
        miner=dict(type='PairMarginMiner'),
        cross_batch_memory=dict(memory_size=32),
        zero_shot_loss=dict(type='ZeroShotLoss', num_classes=4, loss_weight=0.1),
        in_channels=6,
    )
    assert type(head.metric_loss).__name__ == 'CrossBatchMemory'
    embeddings, labels = torch.randn(8, 6, requires_grad=True), torch.arange(8) // 2
    attributes = torch.rand(8, 5).softmax(1)
    losses = head.loss((embeddings,), _samples(labels), attributes=(attributes,))
    assert set(losses) == {'loss_metric', 'loss_zsr'}
    zsr = head.zero_shot_loss(attributes, labels)
    torch.testing.assert_close(losses['loss_zsr'], zsr)
    assert head.metric_loss_weight == 0.9
    with pytest.raises(ValueError, match='attribute vectors'):
        head.loss((embeddings,), _samples(labels))
    predicted = head.predict((embeddings,), _samples(labels))
    torch.testing.assert_close(predicted[0].embedding.norm(), torch.tensor(1.0))


def test_metric_learner_passes_gsp_attributes_and_rejects_other_necks():
    cfg = dict(
        type='MetricLearner',
        backbone=dict(
            type='ResNet_CIFAR',
            depth=18,
            stem_channels=8,
            base_channels=8,
            num_stages=2,
            strides=(1, 2),
            dilations=(1, 1),
            out_indices=(1,),
        ),
        neck=dict(type='GSP', in_channels=16, out_channels=8, num_prototypes=4),
        head=dict(
            type='MetricLearningHead',
            loss=dict(type='ContrastiveLoss', pos_margin=0, neg_margin=0.5),
            zero_shot_loss=dict(type='ZeroShotLoss', num_classes=4, embed_dim=8),
        ),
    )
    model = MODELS.build(cfg)
    assert isinstance(model, MetricLearner) and isinstance(model.neck, GSP)
    losses = model.loss(torch.randn(8, 3, 12, 12), _samples(torch.arange(8) // 2))
    assert set(losses) == {'loss_metric', 'loss_zsr'}
    sum(losses.values()).backward()
    assert model.neck.prototypes.grad is not None
    assert model.head.zero_shot_loss.class_embeddings.grad.abs().sum() > 0
    cfg['neck'] = dict(type='AvgPooling')
    with pytest.raises(ValueError, match="neck=dict\\(type='GSP'"):
        MODELS.build(cfg)


def _digits_cfg(path, work_dir, epochs=1, resume=False):
    cfg = Config.fromfile(path)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'test_{time.time_ns()}'
    cfg.train_cfg.max_epochs = cfg.train_cfg.val_interval = epochs
    cfg.default_hooks.checkpoint.interval = 1
    cfg.default_hooks.logger.interval = 100
    cfg.resume = resume
    return cfg


@pytest.mark.slow  # three Runner runs (train, test, resume) of the digits config
def test_runner_trains_tests_and_resumes_digits_gsp(tmp_path):
    runner = Runner.from_cfg(_digits_cfg('configs/dml_gsp_digits.py', tmp_path))
    model = runner.model
    runner.train()
    neck = model.neck
    assert bool(neck.prototypes_initialised)
    metrics = runner.test()
    # Leave-one-out among 896 unseen-digit images: chance P@1 is ~0.2.
    assert metrics['dml/precision_at_1'] > 0.4
    assert 0 < metrics['dml/mean_average_precision_at_r'] <= metrics['dml/r_precision'] <= 1
    trained = neck.prototypes.detach().clone()

    # MLRC concatenation: the same model twice ranks exactly like the model alone.
    embeddings, labels = extract_embeddings(model, runner.test_dataloader)
    assert embeddings.shape == (896, 32)
    results = concatenated_metrics([embeddings, embeddings], labels)
    for key in ('precision_at_1', 'mean_average_precision_at_r'):
        assert results['fold 0'][key] == pytest.approx(metrics[f'dml/{key}'], abs=1e-12)
        assert results['concatenated'][key] == pytest.approx(results['fold 0'][key], abs=1e-6)
    checkpoint = str(tmp_path / 'epoch_1.pth')
    cli = subprocess.run(
        [
            sys.executable,
            'tools/analysis_tools/dml_mlrc_test.py',
            'configs/dml_gsp_digits.py',
            checkpoint,
            checkpoint,
            '--work-dir',
            str(tmp_path / 'mlrc'),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert '| concatenated |' in cli.stdout

    resumed = Runner.from_cfg(
        _digits_cfg('configs/dml_gsp_digits.py', tmp_path, epochs=2, resume=True)
    )
    resumed.train()
    assert resumed.epoch == 2
    # The initialisation flag came back from the checkpoint: k-center did not run again, and
    # the second epoch kept training the restored prototypes.
    assert bool(resumed.model.neck.prototypes_initialised)
    assert not torch.equal(resumed.model.neck.prototypes.detach(), trained)


def test_runner_digits_average_pooling_baseline(tmp_path):
    runner = Runner.from_cfg(_digits_cfg('configs/dml_avg_digits.py', tmp_path))
    runner.train()
    assert runner.model.head.projection.out_features == 32
    assert runner.test()['dml/precision_at_1'] > 0.4
