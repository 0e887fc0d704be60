# VSE∞ video demo on the synthetic set of gpo_plugin.demo.make_video_demo_data (HGR layout:
# two HDF5 feature files, 48 + 16 = 64-d frames, 12-48 frames a video, capped at 32):
# vse_gpo_msrvtt.py scaled down to train in a few minutes on a 2-core CPU.
# `tools/demos/run_video_demo.py` (make demo-video) creates the data and trains it.
_base_ = ['./vse_gpo_msrvtt.py']

data_root = 'data/demo/video'
vocab_file = 'data/demo/video/annotation/RET/word2int.json'
tokenizer = dict(type='VocabTokenizer', vocab_file=vocab_file)
_dataset = dict(
    data_root=data_root,
    ft_files=[
        'ordered_feature/SA/appearance/{split}_ft.hdf5',
        'ordered_feature/SA/motion/{split}_ft.hdf5',
    ],
    max_frames=32,
    feat_dim=64,
)
model = dict(
    img_enc=dict(in_channels=64, embed_dim=256),
    txt_enc=dict(vocab_file=vocab_file, word_dim=64, embed_dim=256),
)
# The pipelines of vse_video_hgr.py with the demo vocabulary.
train_pipeline = [
    dict(type='TokenizeCaption', tokenizer=tokenizer),
    dict(type='RandomRegionDrop', drop_prob=0.2),
    dict(type='PackVSEInputs'),
]
test_pipeline = [dict(type='TokenizeCaption', tokenizer=tokenizer), dict(type='PackVSEInputs')]
train_dataloader = dict(num_workers=1, dataset=dict(_dataset, pipeline=train_pipeline))
val_dataloader = dict(batch_size=200, num_workers=0, dataset=dict(_dataset, pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=200, num_workers=0, dataset=dict(_dataset, pipeline=test_pipeline)
)

# A short schedule: 25 iterations an epoch, a higher LR, all negatives in the first two
# epochs (hardest negatives from the start collapse an untrained model on this small set).
max_epochs = 10
warmup_epochs = 2
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[8], gamma=0.1)]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_epochs))
custom_hooks = [
    dict(type='HardestNegativeHook', warmup_epochs=warmup_epochs),
    dict(type='PoolingWeightsHook', set_sizes=(8, 16, 24, 32), interval=max_epochs),
]
