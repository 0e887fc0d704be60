# GSP on scikit-learn's handwritten digits (1,797 real 8x8 images, upsampled to 32x32):
# digits 0-4 train, 5-9 test (class-disjoint, like CUB). A small CIFAR-style ResNet gives an
# 8x8 grid of 64-d features; GSP pools it into a 32-d embedding. Trains in a few minutes on a
# 2-core CPU: `python tools/demos/dml_digits_demo.py` runs this and the average-pooling baseline.
_base_ = ['./_base_/dml_runtime.py']

embed_dim = 32
batch_size = 32  # 4 classes x 8 images: two class-disjoint halves of 2 classes each
max_epochs = 12

model = dict(
    type='MetricLearner',
    data_preprocessor=dict(type='ClsDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3),
    backbone=dict(
        type='ResNet_CIFAR',
        depth=18,
        stem_channels=16,
        base_channels=16,
        num_stages=3,
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        out_indices=(2,),
    ),
    neck=dict(
        type='GSP',
        in_channels=64,
        out_channels=embed_dim,
        num_prototypes=16,
        transport_ratio=0.3,
        gamma=5.0,
    ),
    head=dict(
        type='MetricLearningHead',
        loss=dict(type='ContrastiveLoss', pos_margin=0.0, neg_margin=0.5),
        zero_shot_loss=dict(type='ZeroShotLoss', num_classes=5, embed_dim=embed_dim),
    ),
)

train_pipeline = [
    dict(type='RandomCrop', crop_size=32, padding=3),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=0,
    sampler=dict(type='ClassDisjointSampler', batch_size=batch_size, num_per_class=8),
    dataset=dict(type='DigitsMetricDataset', split='train', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='DigitsMetricDataset', split='test', pipeline=test_pipeline),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='MetricLearningMetric')
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-3, weight_decay=1e-4))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True)]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_epochs, save_best=None))
