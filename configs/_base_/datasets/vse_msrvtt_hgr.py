# MSR-VTT in HGR's release: ResNet-152 frame features (2048-d), 6,573 / 497 / 2,990 videos
# (trn / val / tst), 20 captions each; at most 20 frames a video, spread evenly.
_base_ = ['./vse_video_hgr.py']
data_root = 'data/msrvtt'
vocab_file = 'data/msrvtt/annotation/RET/word2int.json'
tokenizer = dict(type='VocabTokenizer', vocab_file=vocab_file)
_dataset = dict(
    data_root=data_root,
    ft_files=['ordered_feature/SA/resnet152.pth/{split}_ft.hdf5'],
    max_frames=20,
    feat_dim=2048,
)
# The pipelines of vse_video_hgr.py with this vocabulary.
train_pipeline = [
    dict(type='TokenizeCaption', tokenizer=tokenizer),
    dict(type='RandomRegionDrop', drop_prob=0.2),
    dict(type='PackVSEInputs'),
]
test_pipeline = [dict(type='TokenizeCaption', tokenizer=tokenizer), dict(type='PackVSEInputs')]
train_dataloader = dict(dataset=dict(_dataset, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(_dataset, pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(_dataset, pipeline=test_pipeline))
