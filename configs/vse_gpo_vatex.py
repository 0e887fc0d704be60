# VSE∞ on VaTeX (I3D, 1024-d): BiGRU text, GPO over frames and words; published RSUM 403.9.
# Data: HGR's release under data/vatex (docs/vse.md#video-text-retrieval).
_base_ = [
    './_base_/models/vse_video_bigru.py',
    './_base_/datasets/vse_vatex_hgr.py',
    './_base_/schedules/vse_video_35e.py',
    './_base_/vse_video_runtime.py',
]
vocab_file = 'data/vatex/annotation/RET/word2int.json'
model = dict(img_enc=dict(in_channels=1024), txt_enc=dict(vocab_file=vocab_file))
