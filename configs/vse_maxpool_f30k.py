# Pooling baseline on Flickr30K: vse_gpo_f30k.py with max pooling on both branches.
_base_ = ['./vse_gpo_f30k.py']
model = dict(
    img_enc=dict(pooling=dict(_delete_=True, type='MaxPooling')),
    txt_enc=dict(pooling=dict(_delete_=True, type='MaxPooling')),
)
custom_hooks = [dict(type='HardestNegativeHook', warmup_epochs=1)]
