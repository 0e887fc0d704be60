# GSP on scikit-learn's digits through PML's trainer and tester (tools/train_pml.py):
# digits 0-4 train, 5-9 validation (class-disjoint). Same network and recipe as
# configs/dml_gsp_digits.py (mmengine side), written for pytorch-metric-learning users.
embed_dim = 32
batch_size = 32  # 4 classes x 8 images: two class-disjoint halves of 2 classes each
num_epochs = 12

trunk = dict(  # an mmpretrain backbone: gives an 8x8 grid of 64-d features
    type='ResNet_CIFAR',
    depth=18,
    stem_channels=16,
    base_channels=16,
    num_stages=3,
    strides=(1, 2, 2),
    dilations=(1, 1, 1),
    out_indices=(2,),
)
embedder = dict(
    pooler=dict(type='GSP', num_prototypes=16, transport_ratio=0.3, gamma=5.0),
    in_channels=64,
    embed_dim=embed_dim,
)
loss = dict(type='ContrastiveLoss', pos_margin=0.0, neg_margin=0.5)
miner = None
zero_shot = dict(num_classes=5, weight=0.1)  # 0.9 * contrastive + 0.1 * zero-shot
sampler = dict(type='ClassDisjointPMLSampler', num_per_class=8)

mean, std = [127.5] * 3, [127.5] * 3
train_dataset = dict(
    type='DigitsMetricDataset',
    split='train',
    pipeline=[dict(type='RandomCrop', crop_size=32, padding=3), dict(type='PackInputs')],
)
val_dataset = dict(type='DigitsMetricDataset', split='test', pipeline=[dict(type='PackInputs')])

optimizers = dict(
    trunk=dict(type='AdamW', lr=2e-3, weight_decay=1e-4),
    embedder=dict(type='AdamW', lr=2e-3, weight_decay=1e-4),
    metric_loss=dict(type='AdamW', lr=2e-3, weight_decay=1e-4),  # zero-shot class embeddings
)
lr_scheduler = dict(type='CosineAnnealingLR', T_max=num_epochs)
tester = dict(batch_size=128)
hooks = dict(test_interval=num_epochs, patience=None, pooling_weights=True, num_images=5)
device = 'cpu'
seed = 0
