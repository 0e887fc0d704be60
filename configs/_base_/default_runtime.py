# Runtime shared by all configs: scope, hooks, logging, visualiser. The checkpoint policy
# (what "best" means) is set by dml_runtime.py / vse_runtime.py.
default_scope = 'gpo_plugin'
custom_imports = dict(imports=['gpo_plugin'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    # A line with loss, lr, time and ETA every `interval` iterations, and at least
    # `lines_per_epoch` lines an epoch on small sets (mmengine's LoggerHook otherwise).
    logger=dict(type='EpochFractionLoggerHook', interval=50, lines_per_epoch=4),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # mmengine's CheckpointHook with atomic writes (temporary file + rename, old checkpoints
    # removed after the new one is on disk): a kill never leaves nothing to resume from.
    checkpoint=dict(type='AtomicCheckpointHook', interval=1),
    # Calls the sampler's set_epoch (ClassDisjointSampler: new batches every epoch).
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # Augmentation draws keyed by (seed, epoch, sample index): resumed runs are exact.
    sample_seed=dict(type='SampleSeedHook'),
    # Stop at a NaN/inf loss, naming the iteration and the batch's sample ids.
    non_finite_loss=dict(type='NonFiniteLossHook'),
)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
# `tools/train.py --tensorboard` (or dict(type='TensorboardVisBackend') here) also logs
# scalars (and VSE's theta plots) to TensorBoard.
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='mmengine.Visualizer', vis_backends=vis_backends)
log_processor = dict(by_epoch=True, window_size=50)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
