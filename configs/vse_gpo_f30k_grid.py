# VSE∞ on Flickr30K from raw images: ResNet-152 grid features at 512 px + BERT, GPO on both
# branches (the paper's WSL ResNeXt-101 gives 1K rSum 550.9; swap the backbone of
# vse_grid_bert.py back in for it). ImageNet weights of ResNet-152 from a local file.
_base_ = [
    './_base_/models/vse_grid_bert.py',
    './_base_/datasets/vse_raw_images.py',
    './_base_/vse_grid_runtime.py',
]
model = dict(
    img_enc=dict(
        backbone=dict(
            _delete_=True,
            type='ResNet',
            depth=152,
            out_indices=(3,),
            init_cfg=dict(type='Pretrained', checkpoint='data/pretrained/resnet152_imagenet.pth'),
        )
    )
)
# Published layout under data/f30k (images in data/f30k/flickr30k-images), or the Karpathy
# JSON: ann_file='dataset_flickr30k.json' (no `filepath` field; images directly in img_dir).
data_root = 'data/f30k'
img_dir = 'flickr30k-images'
train_dataloader = dict(dataset=dict(data_root=data_root, img_dir=img_dir))
val_dataloader = dict(dataset=dict(data_root=data_root, img_dir=img_dir))
# Flickr30K 1K test: 1000 images, 5000 captions.
test_dataloader = dict(dataset=dict(data_root=data_root, img_dir=img_dir))
