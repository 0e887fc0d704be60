# VSE∞ demo on the bundled synthetic set (tools/misc/make_demo_data.py): 128-d "region"
# features, BiGRU text, GPO on both branches, a 256-d joint space and a short schedule so
# it trains in a few minutes on a 2-core CPU. `tools/demos/run_demo.py` creates data and vocab.
_base_ = [
    './_base_/models/vse_region_bigru.py',
    './_base_/datasets/vse_precomp.py',
    './_base_/schedules/vse_25e.py',
    './_base_/vse_runtime.py',
]

data_root = 'data/demo/vse/precomp'
vocab_file = 'data/demo/vse/vocab.json'
feat_dim = 128
embed_dim = 256
tokenizer = dict(_delete_=True, type='VocabTokenizer', vocab_file=vocab_file)

# vse_region_bigru.py, scaled down.
model = dict(
    img_enc=dict(in_channels=feat_dim, embed_dim=embed_dim),
    txt_enc=dict(vocab_file=vocab_file, word_dim=64, embed_dim=embed_dim),
)

# The pipelines of vse_precomp.py with the demo vocabulary.
train_pipeline = [
    dict(type='TokenizeCaption', tokenizer=tokenizer),
    dict(type='RandomRegionDrop', drop_prob=0.2),
    dict(type='RandomWordAugment', tokenizer=tokenizer, prob=0.2),
    dict(type='PackVSEInputs'),
]
test_pipeline = [dict(type='TokenizeCaption', tokenizer=tokenizer), dict(type='PackVSEInputs')]
# Loaders of vse_precomp.py with the demo's data, pipelines and feature size; evaluation
# batches of 250 in the main process.
train_dataloader = dict(
    num_workers=1,
    dataset=dict(data_root=data_root, feat_dim=feat_dim, pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=250,
    num_workers=0,
    dataset=dict(data_root=data_root, feat_dim=feat_dim, pipeline=test_pipeline),
)
# testall: 500 images -> the full result and the 5-fold (100 images each) average.
test_dataloader = dict(val_dataloader, dataset=dict(val_dataloader['dataset'], split='testall'))
test_evaluator = dict(fold_size=100)

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
