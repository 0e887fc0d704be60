# Pooling baseline on COCO: vse_gpo_coco.py with max pooling on both branches (the best
# hand-picked pooler for region features in the VSE∞ paper), for the pooling comparison.
_base_ = ['./vse_gpo_coco.py']
model = dict(
    img_enc=dict(pooling=dict(_delete_=True, type='MaxPooling')),
    txt_enc=dict(pooling=dict(_delete_=True, type='MaxPooling')),
)
custom_hooks = [dict(type='HardestNegativeHook', warmup_epochs=1)]
