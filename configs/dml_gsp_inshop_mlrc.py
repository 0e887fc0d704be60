# GSP on In-Shop in the Metric Learning Reality Check style (MLRC itself has no In-Shop; this is
# its protocol carried over, docs/dml.md#in-shop): 128-d, 4-fold class-disjoint cross-validation
# on the 3,997 training items. Train one model per fold k = 0..3:
#   python tools/train.py configs/dml_gsp_inshop_mlrc.py --work-dir work_dirs/inshop_fold1 \
#       --cfg-options train_dataloader.dataset.fold=1 val_dataloader.dataset.fold=1
# validation (early stopping on MAP@R) is leave-one-out among the held-out fold's items (the
# training split has no query/gallery division); the test split gives the reported numbers,
# query vs gallery (each fold's 128-d, or the four concatenated to 512-d by dml_mlrc_test.py).
_base_ = ['./dml_gsp_inshop.py']

fold = 0
embed_dim = 128
model = dict(
    neck=dict(out_channels=embed_dim),
    head=dict(in_channels=embed_dim, zero_shot_loss=dict(embed_dim=embed_dim)),
)
train_dataloader = dict(dataset=dict(split='train', fold=fold, fold_role='train'))
val_dataloader = dict(dataset=dict(split='train', fold=fold, fold_role='val'))
test_dataloader = dict(dataset=dict(split='test'))
val_evaluator = dict(protocol='leave_one_out')
