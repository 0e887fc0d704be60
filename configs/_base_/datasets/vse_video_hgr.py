# Video–caption pairs in HGR's release layout (docs/vse.md#video-text-retrieval):
# <data_root>/public_split/{trn,val,tst}_names.npy, annotation/RET/{ref_captions,word2int}.json
# and frame features in HDF5 files keyed by video name. vse_msrvtt_hgr.py and
# vse_vatex_hgr.py set the data root, the feature files and their dimension.
data_root = 'data/msrvtt'
vocab_file = 'data/msrvtt/annotation/RET/word2int.json'
tokenizer = dict(type='VocabTokenizer', vocab_file=vocab_file)

# Frame-size augmentation as for regions: each frame dropped with probability 0.2.
train_pipeline = [
    dict(type='TokenizeCaption', tokenizer=tokenizer),
    dict(type='RandomRegionDrop', drop_prob=0.2),
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
        type='VideoCaptionDataset',
        data_root=data_root,
        split='trn',
        ft_files=['ordered_feature/SA/resnet152.pth/{split}_ft.hdf5'],
        max_frames=20,
        feat_dim=2048,
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='vse_collate'),
    dataset=dict(train_dataloader['dataset'], split='val', pipeline=test_pipeline, test_mode=True),
)
# HGR's protocol: distinct caption texts, all their videos as ground truth, argsort ties.
val_evaluator = dict(type='VideoRetrievalMetric', tie_rule='published')
test_dataloader = dict(val_dataloader, dataset=dict(val_dataloader['dataset'], split='tst'))
test_evaluator = val_evaluator
