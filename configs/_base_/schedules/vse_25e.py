# VSE∞ recipe (docs/vse.md#recipe): AdamW 5e-4, wd 1e-4 (the BiGRU configs: 0.01), BERT at
# 0.1x, LR x0.1 at epoch 15 of 25, gradient-norm clipping 2.0, batch 128 (set in the dataset
# files; the COCO/F30K training loaders drop the last incomplete batch).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=2.0),
    paramwise_cfg=dict(custom_keys={'txt_enc.bert': dict(lr_mult=0.1)}),
)
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[15], gamma=0.1)]
train_cfg = dict(by_epoch=True, max_epochs=25, val_interval=1)
# Evaluation under torch.inference_mode (mmengine's ValLoop/TestLoop otherwise).
val_cfg = dict(type='InferenceValLoop')
test_cfg = dict(type='InferenceTestLoop')
# Used with `tools/train.py --auto-scale-lr` when the total batch differs from 128.
auto_scale_lr = dict(base_batch_size=128, enable=False)
