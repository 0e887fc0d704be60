# In-Shop Clothes Retrieval (InShopMetricDataset over mmpretrain's InShop reader), 3,997 training
# items; the test split holds the query and gallery images, each flagged by `is_query`, and is
# evaluated query vs gallery with the customary R@1/10/20/30/40. Loaders: dml_common.py.
_base_ = ['./dml_common.py']

dataset_type = 'InShopMetricDataset'
data_root = 'data/inshop'  # the "In-shop Clothes Retrieval Benchmark" folder
num_train_classes = 3997

# As dml_common.py's, plus the `is_query` flag packed into every data sample.
inshop_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='CenterCrop', crop_size={{_base_.image_size}}),
    dict(type='PackInputs', algorithm_keys=('is_query',)),
]
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=inshop_test_pipeline)
)
test_dataloader = val_dataloader
val_evaluator = dict(type='MetricLearningMetric', protocol='query_gallery', recall_ks='inshop')
test_evaluator = val_evaluator
