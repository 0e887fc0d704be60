# Flickr30K precomputed BUTD features, <data_root>/{split}_ims.npy|_caps.txt|_ids.txt.
# Point it at your copy with `tools/train.py ... --data-root /path/to/f30k/precomp`.
data_root = 'data/f30k/precomp'
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
        pipeline=test_pipeline,
        test_mode=True,
    ),
)
val_evaluator = dict(type='VSERetrievalMetric')
# Flickr30K 1K test: 1000 images, 5000 captions.
test_dataloader = dict(
    batch_size=128,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='vse_collate'),
    dataset=dict(
        type='PrecompCaptionDataset',
        data_root=data_root,
        split='test',
        tokenizer=tokenizer,
        feat_dim=2048,
        captions_per_image=5,
        pipeline=test_pipeline,
        test_mode=True,
    ),
)
test_evaluator = dict(type='VSERetrievalMetric')
