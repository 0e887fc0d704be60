# Runtime of the video configs: best checkpoint by RSUM; hardest negatives from the first
# epoch (HGR's max_violation); theta plotted for frame-set sizes up to the 20-frame cap.
_base_ = ['./default_runtime.py']

default_hooks = dict(
    checkpoint=dict(max_keep_ckpts=2, save_best='retrieval/rsum', rule='greater'),
)
custom_hooks = [
    dict(type='HardestNegativeHook', warmup_epochs=0),
    dict(type='PoolingWeightsHook', set_sizes=(5, 10, 15, 20)),
    dict(type='EmbeddingProgressHook'),
]
