# ResNet-50 (ImageNet weights, frozen BatchNorm) -> GSP -> PML contrastive loss with cross-batch
# memory + zero-shot regularisation (docs/dml.md#zero-shot-regularisation).
embed_dim = 512

model = dict(
    type='MetricLearner',
    data_preprocessor=dict(
        type='ClsDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True,
    ),
    backbone=dict(
        type='ResNet',
        depth=50,
        out_indices=(3,),
        norm_eval=True,  # frozen BN statistics
        norm_cfg=dict(type='BN', requires_grad=False),
        # mmpretrain's ResNet uses torchvision's parameter names. Offline machines: point this at
        # a local copy of the weights (checkpoint='/path/resnet50.pth').
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50'),
    ),
    neck=dict(
        type='GSP',
        in_channels=2048,
        out_channels=embed_dim,
        num_prototypes=64,
        transport_ratio=0.3,
        gamma=5.0,
    ),
    head=dict(
        type='MetricLearningHead',
        in_channels=embed_dim,
        loss=dict(type='ContrastiveLoss', pos_margin=0.0, neg_margin=0.5),
        cross_batch_memory=dict(memory_size=4096),
        # num_classes: the number of training classes, set from the dataset config.
        zero_shot_loss=dict(
            type='ZeroShotLoss',
            num_classes=100,
            embed_dim=embed_dim,
            scale=9.5,
            ridge=0.05,
            loss_weight=0.1,
        ),
    ),
)
