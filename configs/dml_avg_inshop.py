# Baseline of dml_gsp_inshop.py: global average pooling + Linear(2048 -> 512), same loss, no
# zero-shot term (it needs GSP's attribute vectors).
_base_ = ['./dml_gsp_inshop.py']

model = dict(
    neck=dict(_delete_=True, type='AvgPooling'),
    head=dict(in_channels=2048, out_channels={{_base_.embed_dim}}, zero_shot_loss=None),
)
