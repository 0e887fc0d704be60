# Pipelines and loaders shared by the class-disjoint metric-learning datasets (docs/dml.md#data):
# dml_cars.py, dml_cub.py and dml_sop.py set the dataset `type` and `data_root`.
# 8 classes x 4 images a batch, ordered so the two halves hold disjoint classes (zero-shot
# loss). See docs/dml.md for the layout.
batch_size = 32
image_size = 224

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=image_size),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='CenterCrop', crop_size=image_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='ClassDisjointSampler', batch_size=batch_size, num_per_class=4),
    dataset=dict(split='train', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(split='test', pipeline=test_pipeline),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='MetricLearningMetric')
test_evaluator = val_evaluator
