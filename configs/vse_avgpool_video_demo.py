# Baseline of the video demo: vse_gpo_video_demo.py with average pooling on both branches.
_base_ = ['./vse_gpo_video_demo.py']
model = dict(
    img_enc=dict(pooling=dict(_delete_=True, type='AvgPooling')),
    txt_enc=dict(pooling=dict(_delete_=True, type='AvgPooling')),
)
custom_hooks = [dict(type='HardestNegativeHook', warmup_epochs={{_base_.warmup_epochs}})]
