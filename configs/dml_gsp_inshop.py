# GSP, conventional In-Shop protocol: ResNet-50, 512-d, trained on the 3,997 training items,
# evaluated by retrieving the 14,218 query images among the 12,612 gallery images (R@1/10/20/30/40,
# R-Precision, MAP@R). Recipe as dml_gsp_sop.py (docs/dml.md#in-shop says what is assumed).
_base_ = [
    './_base_/models/dml_resnet50_gsp.py',
    './_base_/datasets/dml_inshop.py',
    './_base_/schedules/dml_adam.py',
    './_base_/dml_runtime.py',
]

# In-Shop: 128 prototypes (the paper's setting for SOP and In-Shop), SOP's larger memory.
model = dict(
    neck=dict(num_prototypes=128),
    head=dict(
        cross_batch_memory=dict(memory_size=8192),
        zero_shot_loss=dict(num_classes={{_base_.num_train_classes}}),
    ),
)
train_cfg = dict(max_epochs=60)
