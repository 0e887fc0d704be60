# CUB-200-2011 (CUBMetricDataset), 100 training classes; pipelines and loaders: dml_common.py.
_base_ = ['./dml_common.py']

dataset_type = 'CUBMetricDataset'
data_root = 'data/CUB_200_2011'
num_train_classes = 100

train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
# The customary recall set of CUB, from the same k-NN pass as MAP@R.
val_evaluator = dict(type='MetricLearningMetric', recall_ks='cub')
test_evaluator = val_evaluator
