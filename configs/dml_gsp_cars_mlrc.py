# GSP in the Metric Learning Reality Check protocol: 128-d, 4-fold class-disjoint
# cross-validation on the training classes. Train one model per fold k = 0..3:
#   python tools/train.py configs/dml_gsp_cars_mlrc.py --work-dir work_dirs/cars_fold1 \
#       --cfg-options train_dataloader.dataset.fold=1 val_dataloader.dataset.fold=1
# validation (early stopping on MAP@R) uses the held-out fold's classes; the test classes give
# the reported numbers (each fold's 128-d, or the four concatenated to 512-d).
_base_ = ['./dml_gsp_cars.py']

fold = 0
embed_dim = 128
model = dict(
    neck=dict(out_channels=embed_dim),
    head=dict(in_channels=embed_dim, zero_shot_loss=dict(embed_dim=embed_dim)),
)
train_dataloader = dict(dataset=dict(split='train', fold=fold, fold_role='train'))
val_dataloader = dict(dataset=dict(split='train', fold=fold, fold_role='val'))
test_dataloader = dict(dataset=dict(split='test'))
