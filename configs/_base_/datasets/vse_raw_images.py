# Raw images + captions for the grid-feature path (VSE∞): RawImageCaptionDataset reads the
# published layout (<data_root>/{split}_caps.txt, {split}_ids.txt, id_mapping.json + img_dir)
# or a Karpathy JSON (`ann_file`, e.g. dataset_coco.json). vse_coco_raw.py / vse_f30k_raw.py
# set the paths; a BERT tokenizer (local copy) as in the region configs.
tokenizer = dict(type='HFTokenizer', path='data/bert-base-uncased')
image_size = 512

# Training: random crop with side ratio U(0.6, 1), resize to 512 x 512, horizontal flip
# (mmcv's Resize / RandomFlip, drawing from np.random); the grid drop is drawn here and
# applied after the backbone (GridDropParams -> BackboneGridEncoder).
train_pipeline = [
    dict(type='TokenizeCaption', tokenizer=tokenizer),
    dict(type='LoadVSEImage'),
    dict(type='RandomSideRatioCrop', ratio_range=(0.6, 1.0)),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='GridDropParams', keep_all_prob=0.2, max_rate=0.2),
    dict(type='RandomWordAugment', tokenizer=tokenizer, prob=0.2),
    dict(type='PackVSEInputs'),
]
test_pipeline = [
    dict(type='TokenizeCaption', tokenizer=tokenizer),
    dict(type='LoadVSEImage'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=False),
    dict(type='PackVSEInputs'),
]

train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='vse_collate'),
    dataset=dict(
        type='RawImageCaptionDataset',
        split='train',
        captions_per_image=5,
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='vse_collate'),
    dataset=dict(train_dataloader['dataset'], split='dev', pipeline=test_pipeline, test_mode=True),
)
val_evaluator = dict(type='VSERetrievalMetric')
test_dataloader = dict(val_dataloader, dataset=dict(val_dataloader['dataset'], split='test'))
test_evaluator = dict(type='VSERetrievalMetric')
