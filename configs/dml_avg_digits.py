# Baseline of dml_gsp_digits.py: global average pooling + a Linear to the same 32-d embedding
# (what GSP computes with transport_ratio=1), same metric loss, no zero-shot loss.
_base_ = ['./dml_gsp_digits.py']

model = dict(
    neck=dict(_delete_=True, type='AvgPooling'),
    head=dict(in_channels=64, out_channels={{_base_.embed_dim}}, zero_shot_loss=None),
)
