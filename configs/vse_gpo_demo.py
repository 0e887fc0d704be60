# VSE∞ demo on the bundled synthetic set (tools/make_demo_data.py): 128-d "region"
# features, BiGRU text, GPO on both branches, a 256-d joint space and a short schedule so
# it trains in a few minutes on a 2-core CPU. `tools/run_demo.py` creates data and vocab.
_base_ = ['./_base_/schedules/vse_25e.py', './_base_/vse_runtime.py']

data_root = 'data/demo/vse/precomp'
vocab_file = 'data/demo/vse/vocab.json'
feat_dim = 128
embed_dim = 256
tokenizer = dict(type='VocabTokenizer', vocab_file=vocab_file)

model = dict(
    type='VSERetriever',
    img_enc=dict(
        type='PrecompRegionEncoder',
        in_channels=feat_dim,
        embed_dim=embed_dim,
        pooling=dict(type='GPO'),
    ),
    txt_enc=dict(
        type='BiGRUTextEncoder',
        vocab_file=vocab_file,
        word_dim=64,
        embed_dim=embed_dim,
        pooling=dict(type='GPO'),
    ),
    head=dict(type='VSEHead', loss=dict(type='ContrastiveLoss', margin=0.2, max_violation=False)),
)

train_pipeline = [
    dict(type='RandomRegionDrop', drop_prob=0.2),
    dict(type='RandomWordAugment', prob=0.2),
    dict(type='PackVSEInputs'),
]
test_pipeline = [dict(type='PackVSEInputs')]
train_dataloader = dict(
    batch_size=128,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='vse_collate'),
    dataset=dict(
        type='PrecompCaptionDataset',
        data_root=data_root,
        split='train',
        tokenizer=tokenizer,
        feat_dim=feat_dim,
        captions_per_image=5,
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=250,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='vse_collate'),
    dataset=dict(
        type='PrecompCaptionDataset',
        data_root=data_root,
        split='dev',
        tokenizer=tokenizer,
        feat_dim=feat_dim,
        captions_per_image=5,
        pipeline=test_pipeline,
        test_mode=True,
    ),
)
val_evaluator = dict(type='VSERetrievalMetric')
# testall: 500 images -> the full result and the 5-fold (100 images each) average.
test_dataloader = dict(
    batch_size=250,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='vse_collate'),
    dataset=dict(
        type='PrecompCaptionDataset',
        data_root=data_root,
        split='testall',
        tokenizer=tokenizer,
        feat_dim=feat_dim,
        captions_per_image=5,
        pipeline=test_pipeline,
        test_mode=True,
    ),
)
test_evaluator = dict(type='VSERetrievalMetric', fold_size=100)

# A short version of the VSE∞ recipe: 4x the LR for a 79-iteration epoch, all negatives
# for the first `warmup_epochs` (VSE++'s hardest negatives collapse an untrained model).
max_epochs = 5
warmup_epochs = 2
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[4], gamma=0.1)]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=5))
custom_hooks = [
    dict(type='HardestNegativeHook', warmup_epochs=warmup_epochs),
    dict(type='PoolingWeightsHook', set_sizes=(5, 10, 20, 36)),
]
