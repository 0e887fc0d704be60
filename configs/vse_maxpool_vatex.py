# Pooling baseline of vse_gpo_vatex.py: max pooling on both branches (over frames and words).
_base_ = ['./vse_gpo_vatex.py']
model = dict(
    img_enc=dict(pooling=dict(_delete_=True, type='MaxPooling')),
    txt_enc=dict(pooling=dict(_delete_=True, type='MaxPooling')),
)
# No GPO left to plot.
custom_hooks = [
    dict(type='HardestNegativeHook', warmup_epochs=0),
    dict(type='EmbeddingProgressHook'),
]
