# VaTeX in HGR's release: I3D features (1024-d), 25,991 training videos; the 3,000 official
# validation videos split into 1,500 val / 1,500 tst; 10 English captions each.
_base_ = ['./vse_video_hgr.py']
data_root = 'data/vatex'
vocab_file = 'data/vatex/annotation/RET/word2int.json'
tokenizer = dict(type='VocabTokenizer', vocab_file=vocab_file)
_dataset = dict(
    data_root=data_root,
    ft_files=['ordered_feature/SA/i3d/{split}_ft.hdf5'],
    max_frames=20,
    feat_dim=1024,
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
