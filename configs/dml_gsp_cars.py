# GSP, conventional setting: ResNet-50, 512-d, trained on the training classes, evaluated on
# the unseen test classes (P@1 = R@1, R@2/4/8, R-Precision, MAP@R).
_base_ = [
    './_base_/models/dml_resnet50_gsp.py',
    './_base_/datasets/dml_cars.py',
    './_base_/schedules/dml_adam.py',
    './_base_/dml_runtime.py',
]

model = dict(head=dict(zero_shot_loss=dict(num_classes={{_base_.num_train_classes}})))
