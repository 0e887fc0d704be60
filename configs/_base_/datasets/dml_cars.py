# Cars196 (Cars196MetricDataset), 98 training classes; pipelines and loaders: dml_common.py.
_base_ = ['./dml_common.py']

dataset_type = 'Cars196MetricDataset'
data_root = 'data/cars196'
num_train_classes = 98

train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
# The customary recall set of Cars196, from the same k-NN pass as MAP@R.
val_evaluator = dict(type='MetricLearningMetric', recall_ks='cars')
test_evaluator = val_evaluator
