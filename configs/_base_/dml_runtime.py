# Runtime shared by the deep-metric-learning (GSP) configs.
default_scope = 'gpo_plugin'
custom_imports = dict(imports=['gpo_plugin'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Early stopping in the MLRC sense: keep the checkpoint with the best validation MAP@R.
    checkpoint=dict(
        type='CheckpointHook',
        interval=1,
        max_keep_ckpts=1,
        save_best='dml/mean_average_precision_at_r',
        rule='greater',
    ),
    # Calls ClassDisjointSampler.set_epoch: new batches every epoch.
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='mmengine.Visualizer', vis_backends=vis_backends)
log_processor = dict(by_epoch=True, window_size=50)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
