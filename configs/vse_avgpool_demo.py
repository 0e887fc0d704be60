# Pooling baseline for the demo: vse_gpo_demo.py with average pooling on both branches
# (`tools/demos/run_demo.py` trains it after GPO for the comparison).
_base_ = ['./vse_gpo_demo.py']
model = dict(
    img_enc=dict(pooling=dict(_delete_=True, type='AvgPooling')),
    txt_enc=dict(pooling=dict(_delete_=True, type='AvgPooling')),
)
custom_hooks = [dict(type='HardestNegativeHook', warmup_epochs={{_base_.warmup_epochs}})]
