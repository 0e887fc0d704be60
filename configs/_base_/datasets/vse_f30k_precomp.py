# Flickr30K precomputed BUTD features, <data_root>/{split}_ims.npy|_caps.txt|_ids.txt.
# Point it at your copy with `tools/train.py ... --data-root /path/to/f30k/precomp`.
_base_ = ['./vse_precomp.py']

data_root = 'data/f30k/precomp'
# The published loader drops the last incomplete batch of each epoch.
train_dataloader = dict(drop_last=True, dataset=dict(data_root=data_root))
val_dataloader = dict(persistent_workers=True, dataset=dict(data_root=data_root))
# Flickr30K 1K test: 1000 images, 5000 captions.
test_dataloader = dict(persistent_workers=True, dataset=dict(data_root=data_root))
