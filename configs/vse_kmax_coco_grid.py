# Pooling baseline for the grid features: vse_gpo_coco_grid.py with K-max pooling (K = 20,
# the best hand-picked pooler for grid features in the VSE∞ paper) on both branches.
_base_ = ['./vse_gpo_coco_grid.py']
model = dict(
    img_enc=dict(pooling=dict(_delete_=True, type='KMaxPooling', k=20)),
    txt_enc=dict(pooling=dict(_delete_=True, type='KMaxPooling', k=20)),
)
# No theta plots: KMaxPooling has no learnt weights.
custom_hooks = [
    dict(type='HardestNegativeHook', warmup_epochs=1),
    dict(type='BackboneWarmupHook', freeze_epochs=1, ramp_epochs=1),
    dict(type='EmbeddingProgressHook'),
]
