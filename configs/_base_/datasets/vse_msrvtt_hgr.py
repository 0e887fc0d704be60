# MSR-VTT in HGR's release: ResNet-152 frame features (2048-d), 6,573 / 497 / 2,990 videos
# (trn / val / tst), 20 captions each; at most 20 frames a video, spread evenly.
_base_ = ['./vse_video_hgr.py']
data_root = 'data/msrvtt'
vocab_file = 'data/msrvtt/annotation/RET/word2int.json'
tokenizer = dict(type='VocabTokenizer', vocab_file=vocab_file)
_dataset = dict(
    data_root=data_root,
    tokenizer=tokenizer,
    ft_files=['ordered_feature/SA/resnet152.pth/{split}_ft.hdf5'],
    max_frames=20,
    feat_dim=2048,
)
train_dataloader = dict(dataset=_dataset)
val_dataloader = dict(dataset=_dataset)
test_dataloader = dict(dataset=_dataset)
