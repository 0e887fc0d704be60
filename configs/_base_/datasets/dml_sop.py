# Stanford Online Products (SOPMetricDataset), 11,318 training classes; see dml_common.py.
_base_ = ['./dml_common.py']

dataset_type = 'SOPMetricDataset'
data_root = 'data/Stanford_Online_Products'
num_train_classes = 11318

train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
# The customary recall set of SOP, from the same k-NN pass as MAP@R.
val_evaluator = dict(type='MetricLearningMetric', recall_ks='sop')
test_evaluator = val_evaluator
