# Runtime and schedule additions of the grid-feature recipe (VSE∞): backbone at 0.01x LR and
# BERT at 0.1x (weight decay 1e-4 from vse_25e.py), backbone frozen in epoch 0 and the loss
# ramped 0 -> 1 through epoch 1, hardest negatives from epoch 1 on.
_base_ = ['./schedules/vse_25e.py', './vse_runtime.py']

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'img_enc.backbone': dict(lr_mult=0.01),
            'txt_enc.bert': dict(lr_mult=0.1),
        }
    )
)
custom_hooks = [
    dict(type='HardestNegativeHook', warmup_epochs=1),
    dict(type='BackboneWarmupHook', freeze_epochs=1, ramp_epochs=1),
    dict(type='PoolingWeightsHook', set_sizes=(64, 128, 192, 256)),
    dict(type='EmbeddingProgressHook'),
]
# Distributed runs: the backbone gets no gradients while frozen (epoch 0), which DDP accepts
# only when it looks for unused parameters.
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
