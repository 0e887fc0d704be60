# COCO precomputed BUTD features, <data_root>/{split}_ims.npy|_caps.txt|_ids.txt.
# Point it at your copy with `tools/train.py ... --data-root /path/to/coco/precomp` (or
# --cfg-options {train,val,test}_dataloader.dataset.data_root=...).
_base_ = ['./vse_precomp.py']

data_root = 'data/coco/precomp'
# The published loader drops the last incomplete batch of each epoch.
train_dataloader = dict(drop_last=True, dataset=dict(data_root=data_root))
# Validation on the first 1000 dev images (5000 captions), as the reference code does.
val_dataloader = dict(persistent_workers=True, dataset=dict(data_root=data_root, max_images=1000))
# testall = 5000 images: the 5K result and the 5-fold 1K average in one evaluation.
test_dataloader = dict(persistent_workers=True, dataset=dict(data_root=data_root, split='testall'))
test_evaluator = dict(fold_size=1000)
