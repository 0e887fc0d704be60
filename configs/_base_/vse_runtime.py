# Runtime of the VSE∞ configs: keep the two best checkpoints by rSum, plus VSE's hooks.
_base_ = ['./default_runtime.py']

default_hooks = dict(
    checkpoint=dict(max_keep_ckpts=2, save_best='retrieval/rsum', rule='greater'),
)
custom_hooks = [
    # All negatives in epoch 0, hardest negative from epoch 1 on (VSE++ max violation).
    dict(type='HardestNegativeHook', warmup_epochs=1),
    # PNG of GPO's theta per branch after each epoch, also sent to the visualiser.
    dict(type='PoolingWeightsHook', set_sizes=(5, 10, 20, 36)),
    # Progress bar with items/s while validation/test embed the dataset.
    dict(type='EmbeddingProgressHook'),
]
