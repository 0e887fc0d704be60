# Precomputed region features + captions, <data_root>/{split}_ims.npy|_caps.txt|_ids.txt,
# shared by vse_coco_precomp.py, vse_f30k_precomp.py and the demo configs: each sets
# `data_root` in the three loaders, and what else differs (splits, loader sizes, tokenizer).
tokenizer = dict(type='HFTokenizer', path='data/bert-base-uncased')

# The dataset reads (regions, caption string); the pipeline tokenises first. A config with
# another tokenizer restates both pipelines with it.
train_pipeline = [
    dict(type='TokenizeCaption', tokenizer=tokenizer),
    dict(type='RandomRegionDrop', drop_prob=0.2),
    dict(type='RandomWordAugment', tokenizer=tokenizer, prob=0.2),
    dict(type='PackVSEInputs'),
]
test_pipeline = [dict(type='TokenizeCaption', tokenizer=tokenizer), dict(type='PackVSEInputs')]

train_dataloader = dict(
    batch_size=128,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='vse_collate'),
    dataset=dict(
        type='PrecompCaptionDataset',
        split='train',
        feat_dim=2048,
        captions_per_image=5,
        pipeline=train_pipeline,
    ),
)
# Evaluation: the training dataset settings on another split, without augmentation. No
# persistent_workers here: the demo evaluates in the main process (num_workers=0).
val_dataloader = dict(
    batch_size=128,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='vse_collate'),
    dataset=dict(train_dataloader['dataset'], split='dev', pipeline=test_pipeline, test_mode=True),
)
val_evaluator = dict(type='VSERetrievalMetric')
test_dataloader = dict(val_dataloader, dataset=dict(val_dataloader['dataset'], split='test'))
test_evaluator = dict(type='VSERetrievalMetric')
