# COCO precomputed BUTD features, <data_root>/{split}_ims.npy|_caps.txt|_ids.txt.
# Point it at your copy with `tools/train.py ... --data-root /path/to/coco/precomp` (or
# --cfg-options {train,val,test}_dataloader.dataset.data_root=...).
data_root = 'data/coco/precomp'
tokenizer = dict(type='HFTokenizer', path='data/bert-base-uncased')

train_pipeline = [
    dict(type='RandomRegionDrop', drop_prob=0.2),
    dict(type='RandomWordAugment', prob=0.2),
    dict(type='PackVSEInputs'),
]
test_pipeline = [dict(type='PackVSEInputs')]

train_dataloader = dict(
    batch_size=128,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='vse_collate'),
    dataset=dict(
        type='PrecompCaptionDataset',
        data_root=data_root,
        split='train',
        tokenizer=tokenizer,
        feat_dim=2048,
        captions_per_image=5,
        pipeline=train_pipeline,
    ),
)
# Validation on the first 1000 dev images (5000 captions), as the reference code does.
val_dataloader = dict(
    batch_size=128,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='vse_collate'),
    dataset=dict(
        type='PrecompCaptionDataset',
        data_root=data_root,
        split='dev',
        tokenizer=tokenizer,
        feat_dim=2048,
        captions_per_image=5,
        max_images=1000,
        pipeline=test_pipeline,
        test_mode=True,
    ),
)
val_evaluator = dict(type='VSERetrievalMetric')
# testall = 5000 images: the 5K result and the 5-fold 1K average in one evaluation.
test_dataloader = dict(
    batch_size=128,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='vse_collate'),
    dataset=dict(
        type='PrecompCaptionDataset',
        data_root=data_root,
        split='testall',
        tokenizer=tokenizer,
        feat_dim=2048,
        captions_per_image=5,
        pipeline=test_pipeline,
        test_mode=True,
    ),
)
test_evaluator = dict(type='VSERetrievalMetric', fold_size=1000)
