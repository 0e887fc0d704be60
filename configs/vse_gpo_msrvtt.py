# VSE∞ on MSR-VTT (ResNet-152 frames, 2048-d): BiGRU text, GPO over frames and words; published RSUM 174.7.
# Data: HGR's release under data/msrvtt (docs/vse.md#video-text-retrieval).
_base_ = [
    './_base_/models/vse_video_bigru.py',
    './_base_/datasets/vse_msrvtt_hgr.py',
    './_base_/schedules/vse_video_35e.py',
    './_base_/vse_video_runtime.py',
]
vocab_file = 'data/msrvtt/annotation/RET/word2int.json'
model = dict(img_enc=dict(in_channels=2048), txt_enc=dict(vocab_file=vocab_file))
