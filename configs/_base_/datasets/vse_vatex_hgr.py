# VaTeX in HGR's release: I3D features (1024-d), 25,991 training videos; the 3,000 official
# validation videos split into 1,500 val / 1,500 tst; 10 English captions each.
_base_ = ['./vse_video_hgr.py']
data_root = 'data/vatex'
vocab_file = 'data/vatex/annotation/RET/word2int.json'
tokenizer = dict(type='VocabTokenizer', vocab_file=vocab_file)
_dataset = dict(
    data_root=data_root,
    tokenizer=tokenizer,
    ft_files=['ordered_feature/SA/i3d/{split}_ft.hdf5'],
    max_frames=20,
    feat_dim=1024,
)
train_dataloader = dict(dataset=_dataset)
val_dataloader = dict(dataset=_dataset)
test_dataloader = dict(dataset=_dataset)
