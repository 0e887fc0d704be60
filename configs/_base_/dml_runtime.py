# Runtime of the deep-metric-learning (GSP) configs.
_base_ = ['./default_runtime.py']

# Early stopping in the MLRC sense: keep the checkpoint with the best validation MAP@R.
default_hooks = dict(
    checkpoint=dict(max_keep_ckpts=1, save_best='dml/mean_average_precision_at_r', rule='greater')
)
