# VSE∞ on COCO from raw images: ResNeXt-101 32x8d (WSL weights, local file) grid features at
# 512 px + BERT, GPO on both branches -- the paper's best setting (5K rSum 468.9).
_base_ = [
    './_base_/models/vse_grid_bert.py',
    './_base_/datasets/vse_raw_images.py',
    './_base_/vse_grid_runtime.py',
]
# Published layout: data/coco/{split}_caps.txt, {split}_ids.txt, id_mapping.json and the
# images under data/coco/images. For a Karpathy JSON instead, set
# `*_dataloader.dataset.ann_file='dataset_coco.json'` and `img_dir` to the image root.
data_root = 'data/coco'
train_dataloader = dict(dataset=dict(data_root=data_root, img_dir='images'))
# Validation on the first 1000 dev images, as for the region features.
val_dataloader = dict(dataset=dict(data_root=data_root, img_dir='images', max_images=1000))
# testall = 5000 images: the 5K result and the 5-fold 1K average in one evaluation.
test_dataloader = dict(dataset=dict(data_root=data_root, img_dir='images', split='testall'))
test_evaluator = dict(fold_size=1000)
