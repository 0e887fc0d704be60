# GSP, conventional setting: ResNet-50, 512-d, trained on the training classes, evaluated on
# the unseen test classes (P@1 = R@1, R@2/4/8, R-Precision, MAP@R).
_base_ = [
    './_base_/models/dml_resnet50_gsp.py',
    './_base_/datasets/dml_sop.py',
    './_base_/schedules/dml_adam.py',
    './_base_/dml_runtime.py',
]

# SOP: 128 prototypes (the paper's setting), a larger memory, 11,318 training classes.
model = dict(
    neck=dict(num_prototypes=128),
    head=dict(
        cross_batch_memory=dict(memory_size=8192),
        zero_shot_loss=dict(num_classes={{_base_.num_train_classes}}),
    ),
)
train_cfg = dict(max_epochs=60)
