# Baseline of the grid demo: vse_gpo_demo_grid.py with average pooling on both branches.
_base_ = ['./vse_gpo_demo_grid.py']
model = dict(
    img_enc=dict(pooling=dict(_delete_=True, type='AvgPooling')),
    txt_enc=dict(pooling=dict(_delete_=True, type='AvgPooling')),
)
custom_hooks = [
    dict(type='HardestNegativeHook', warmup_epochs=1),
    dict(type='BackboneWarmupHook', freeze_epochs=1, ramp_epochs=1),
    dict(type='EmbeddingProgressHook'),
]
