# Baseline of dml_gsp_inshop_mlrc.py: average pooling + Linear(2048 -> 128), same protocol.
_base_ = ['./dml_gsp_inshop_mlrc.py']

model = dict(
    neck=dict(_delete_=True, type='AvgPooling'),
    head=dict(in_channels=2048, out_channels={{_base_.embed_dim}}, zero_shot_loss=None),
)
