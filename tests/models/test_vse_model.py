"""VSE∞ loss, encoders, head, retriever and hooks (docs/vse.md#models)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.visualization import Visualizer

from gpo_plugin.engine import HardestNegativeHook, PoolingWeightsHook
from gpo_plugin.models import VSERetriever
from gpo_plugin.models.encoders import BiGRUTextEncoder, PrecompRegionEncoder
from gpo_plugin.models.losses import VSEContrastiveLoss
from gpo_plugin.registry import MODELS
from gpo_plugin.visualization import rank_weight_curves

# Tiny embeddings whose similarity matrix S = im @ s.T is easy to work out by hand:
# im = [[1, 0], [0, 1]], s = [[0.6, 0.8], [1, 0]] -> S = [[0.6, 1.0], [0.8, 0.0]].
IM = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
S = torch.tensor([[0.6, 0.8], [1.0, 0.0]])


def test_contrastive_loss_all_negatives_by_hand():
    # Diagonal S_00 = 0.6, S_11 = 0.0, margin 0.2.
    # cost_s (image i, caption j != i): [0.2 + S_01 - S_00] = 0.6, [0.2 + S_10 - S_11] = 1.0.
    # cost_im (caption j, image i != j): [0.2 + S_10 - S_00] = 0.4, [0.2 + S_01 - S_11] = 1.2.
    loss = VSEContrastiveLoss(margin=0.2)(IM, S)
    assert loss.item() == pytest.approx(0.6 + 1.0 + 0.4 + 1.2)


def test_contrastive_loss_hardest_negative_by_hand():
    # Three pairs; S = [[0.9, 0.5, 0.8], [0.1, 0.7, 0.6], [0.3, 0.95, 0.4]].
    im = torch.eye(3)
    s = torch.tensor([[0.9, 0.1, 0.3], [0.5, 0.7, 0.95], [0.8, 0.6, 0.4]])
    # Per image (row i, max over j != i of [0.2 + S_ij - S_ii]):
    #   row 0: max(0.2+0.5-0.9, 0.2+0.8-0.9) -> max(0, 0.1) = 0.1
    #   row 1: max(0.2+0.1-0.7, 0.2+0.6-0.7) -> 0.1
    #   row 2: max(0.2+0.3-0.4, 0.2+0.95-0.4) -> 0.75
    # Per caption (column j, max over i != j of [0.2 + S_ij - S_jj]):
    #   col 0: max(0.2+0.1-0.9, 0.2+0.3-0.9) -> 0
    #   col 1: max(0.2+0.5-0.7, 0.2+0.95-0.7) -> 0.45
    #   col 2: max(0.2+0.8-0.4, 0.2+0.6-0.4) -> 0.6
    hard = VSEContrastiveLoss(margin=0.2, max_violation=True)(im, s)
    assert hard.item() == pytest.approx(0.1 + 0.1 + 0.75 + 0 + 0.45 + 0.6)
    # All negatives: every positive hinge term. Rows: 0 + 0.1, 0 + 0.1, 0.1 + 0.75;
    # columns: 0 + 0, 0 + 0.45, 0.6 + 0.4.
    every = VSEContrastiveLoss(margin=0.2)(im, s)
    assert every.item() == pytest.approx(0.1 + 0.1 + 0.85 + 0.45 + 1.0)
    with pytest.raises(ValueError, match='matching rows'):
        VSEContrastiveLoss()(im, s[:2])


def test_region_encoder_ignores_padding_and_builds_any_pooler():
    torch.manual_seed(0)
    enc = PrecompRegionEncoder(in_channels=8, embed_dim=6, pooling=dict(type='GPO')).eval()
    regions = torch.randn(3, 5, 8)
    lengths = torch.tensor([5, 2, 4])
    out = enc(regions, lengths)
    padded = torch.cat([regions, torch.randn(3, 4, 8) * 100], dim=1)
    garbage = padded.clone()
    for b, n in enumerate(lengths):
        garbage[b, n:5] = 1e4
    assert out.shape == (3, 6)
    torch.testing.assert_close(enc(garbage, lengths), out)
    # Training-mode BatchNorm statistics come from the valid regions only.
    enc.train()
    torch.testing.assert_close(enc(garbage, lengths), enc(regions, lengths))
    with pytest.raises(ValueError, match='in_channels=8'):
        enc(torch.randn(2, 3, 7), torch.tensor([3, 3]))
    assert enc.fc.bias.abs().sum() == 0
    bound = (6.0 / (8 + 6)) ** 0.5
    assert enc.fc.weight.abs().max() <= bound
    maxpool = PrecompRegionEncoder(
        in_channels=8, embed_dim=6, mlp_hidden=0, pooling=dict(type='MaxPooling')
    )
    feats = maxpool.embed_regions(regions, lengths)
    torch.testing.assert_close(maxpool(regions, lengths)[1], feats[1, :2].max(0).values)


def test_bigru_encoder_averages_directions_and_respects_lengths():
    torch.manual_seed(0)
    enc = BiGRUTextEncoder(vocab_size=20, word_dim=4, embed_dim=6, pooling=dict(type='AvgPooling'))
    tokens = torch.tensor([[1, 5, 7, 2], [1, 9, 2, 0]])
    lengths = torch.tensor([4, 3])
    feats = enc.embed_tokens(tokens, lengths)
    # Direct formulation: run the GRU on the unpadded second caption alone.
    hidden, _ = enc.rnn(enc.embed(tokens[1:, :3]))
    torch.testing.assert_close(feats[1, :3], (hidden[0, :, :6] + hidden[0, :, 6:]) / 2)
    torch.testing.assert_close(enc(tokens, lengths)[1], feats[1, :3].mean(0))
    with pytest.raises(ValueError, match='vocab_file'):
        enc(torch.tensor([[1, 25]]), torch.tensor([2]))


def tiny_retriever(pooling='GPO'):
    return VSERetriever(
        img_enc=dict(
            type='PrecompRegionEncoder', in_channels=8, embed_dim=6, pooling=dict(type=pooling)
        ),
        txt_enc=dict(
            type='BiGRUTextEncoder',
            vocab_size=30,
            word_dim=4,
            embed_dim=6,
            pooling=dict(type=pooling),
        ),
        head=dict(type='VSEHead', loss=dict(type='VSEContrastiveLoss', margin=0.2)),
    )


def tiny_batch():
    inputs = dict(
        img=torch.randn(4, 5, 8),
        img_lengths=torch.tensor([5, 3, 4, 1]),
        txt=torch.randint(1, 30, (4, 6)),
        txt_lengths=torch.tensor([6, 2, 4, 5]),
    )
    samples = dict(img_idx=torch.tensor([0, 0, 1, 2]), cap_idx=torch.tensor([0, 1, 5, 10]))
    return inputs, samples


def test_retriever_modes():
    model = tiny_retriever()
    inputs, samples = tiny_batch()
    img, txt = model(inputs, mode='tensor')
    assert img.shape == txt.shape == (4, 6)
    torch.testing.assert_close(img.norm(dim=1), torch.ones(4))
    loss = model(inputs, samples, mode='loss')['loss']
    torch.testing.assert_close(loss, VSEContrastiveLoss(0.2)(img, txt))
    loss.backward()
    assert model.img_enc.gpool.linear.weight.grad is not None
    model.eval()
    with torch.no_grad():
        preds = model(inputs, samples, mode='predict')
    assert [p['cap_idx'] for p in preds] == [0, 1, 5, 10] and preds[2]['img_idx'] == 1
    with pytest.raises(KeyError, match='vse_collate'):
        model(dict(img=inputs['img']), mode='tensor')
    with pytest.raises(ValueError, match='mode'):
        model(inputs, samples, mode='nope')


def test_retriever_builds_from_registry_with_baseline_poolers():
    model = MODELS.build(
        dict(
            type='VSERetriever',
            img_enc=dict(
                type='PrecompRegionEncoder',
                in_channels=8,
                embed_dim=6,
                pooling=dict(type='KMaxPooling', k=2),
            ),
            txt_enc=dict(
                type='BiGRUTextEncoder',
                vocab_size=30,
                word_dim=4,
                embed_dim=6,
                pooling=dict(type='MaxPooling'),
            ),
        )
    )
    assert type(model.img_enc.gpool).__name__ == 'KMaxPooling'
    assert model(tiny_batch()[0])[0].shape == (4, 6)


def fake_runner(model, epoch, tmp_path=None):
    logs = []
    return SimpleNamespace(
        model=model,
        epoch=epoch,
        rank=0,
        work_dir=str(tmp_path),
        logger=SimpleNamespace(info=logs.append),
        logs=logs,
        visualizer=None,
    )


def test_hardest_negative_hook_switches_after_warmup():
    model = tiny_retriever()
    hook = HardestNegativeHook(warmup_epochs=2)
    loss = model.head.loss_module
    for epoch, expected in [(0, False), (1, False), (2, True), (3, True)]:
        hook.before_train_epoch(fake_runner(model, epoch))
        assert loss.max_violation is expected
    # Resuming into a later epoch sets it right away; the switch is driven by the epoch.
    fresh = tiny_retriever()
    hook.before_train_epoch(fake_runner(fresh, 5))
    assert fresh.head.loss_module.max_violation is True
    with pytest.raises(RuntimeError, match='max_violation'):
        hook.before_train_epoch(fake_runner(torch.nn.Linear(2, 2), 0))


def test_pooling_weights_hook_writes_png_per_branch(tmp_path):
    model = tiny_retriever()
    runner = fake_runner(model, 0, tmp_path)
    runner.visualizer = Visualizer(
        name='vse_test_vis',
        vis_backends=[dict(type='LocalVisBackend')],
        save_dir=str(tmp_path / 'vis'),
    )
    hook = PoolingWeightsHook(set_sizes=(3, 7))
    theta = rank_weight_curves(model.img_enc.gpool, hook.set_sizes)
    expected = model.img_enc.gpool.pool_weights(torch.tensor([3, 7]))
    np.testing.assert_allclose(theta[1], expected[1].detach().numpy(), rtol=1e-6)
    assert len(theta[0]) == 3 and theta[0].sum() == pytest.approx(1.0, abs=1e-5)
    hook.after_train_epoch(runner)
    pngs = sorted(p.name for p in (tmp_path / 'pooling_weights').iterdir())
    assert pngs == ['epoch_1_img_enc_gpool.png', 'epoch_1_txt_enc_gpool.png']
    import matplotlib.image as mpimg

    image = mpimg.imread(tmp_path / 'pooling_weights' / pngs[0])
    assert image.ndim == 3 and image.shape[0] > 100
    assert list((tmp_path / 'vis').rglob('*.png'))
    # A model without GPO has nothing to plot.
    avg = tiny_retriever('AvgPooling')
    hook.after_train_epoch(fake_runner(avg, 0, tmp_path / 'avg'))
    assert not (tmp_path / 'avg').exists()
