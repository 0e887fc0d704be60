# Baseline of dml_gsp_digits_clutter.py: average pooling + Linear to the same 32-d embedding.
_base_ = ['./dml_gsp_digits_clutter.py']

model = dict(
    neck=dict(_delete_=True, type='AvgPooling'),
    head=dict(in_channels=64, out_channels={{_base_.embed_dim}}, zero_shot_loss=None),
)
