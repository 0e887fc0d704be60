# VSE∞ grid features: a CNN fine-tuned end to end (its last feature map, 16 x 16 x 2048 at
# 512 px, is the set GPO pools) + BERT text. The backbone is a ResNeXt-101 32x8d; its
# Instagram-WSL weights (torchvision/hub key names, which mmpretrain's ResNeXt shares) must
# be a local file: set `model.img_enc.backbone.init_cfg.checkpoint`.
model = dict(
    type='VSERetriever',
    # Images arrive as BGR uint8 from LoadVSEImage; ImageNet mean/std in RGB order.
    data_preprocessor=dict(
        type='VSEDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True,
    ),
    img_enc=dict(
        type='BackboneGridEncoder',
        backbone=dict(
            type='ResNeXt',
            depth=101,
            groups=32,
            width_per_group=8,
            out_indices=(3,),
            init_cfg=dict(type='Pretrained', checkpoint='data/pretrained/resnext101_32x8d_wsl.pth'),
        ),
        in_channels=2048,
        embed_dim=1024,
        pooling=dict(type='GPO'),
        frozen_bn=True,
        # Activation checkpointing of the backbone: less memory for 512 px, ~30 % slower.
        with_cp=False,
    ),
    txt_enc=dict(
        type='BertTextEncoder',
        pretrained='data/bert-base-uncased',
        embed_dim=1024,
        pooling=dict(type='GPO'),
    ),
    head=dict(
        type='VSEHead', loss=dict(type='VSEContrastiveLoss', margin=0.2, max_violation=False)
    ),
)
