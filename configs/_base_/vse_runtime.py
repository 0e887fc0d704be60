# Runtime shared by the VSE∞ configs: scope, hooks, logging, visualiser.
default_scope = 'gpo_plugin'
custom_imports = dict(imports=['gpo_plugin'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    # One line every `interval` iterations with loss, lr, time and ETA (the progress display).
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook',
        interval=1,
        max_keep_ckpts=2,
        save_best='retrieval/rsum',
        rule='greater',
    ),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
custom_hooks = [
    # All negatives in epoch 0, hardest negative from epoch 1 on (VSE++ max violation).
    dict(type='HardestNegativeHook', warmup_epochs=1),
    # PNG of GPO's theta per branch after each epoch, also sent to the visualiser.
    dict(type='PoolingWeightsHook', set_sizes=(5, 10, 20, 36)),
]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
# Add dict(type='TensorboardVisBackend') to log scalars and the theta plots to TensorBoard.
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='mmengine.Visualizer', vis_backends=vis_backends)
log_processor = dict(by_epoch=True, window_size=50)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
