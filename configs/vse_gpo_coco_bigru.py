# VSE∞ on COCO: BUTD region features + BiGRU text, GPO (5K R@1 56.6 / 39.3, rSum 421.9).
# Build the vocabulary first:
#   python tools/misc/build_vocab.py data/coco/precomp/train_caps.txt --out data/coco/vocab.json
_base_ = [
    './_base_/models/vse_region_bigru.py',
    './_base_/datasets/vse_coco_precomp.py',
    './_base_/schedules/vse_25e.py',
    './_base_/vse_runtime.py',
]
vocab_file = 'data/coco/vocab.json'
tokenizer = dict(_delete_=True, type='VocabTokenizer', vocab_file=vocab_file)
model = dict(txt_enc=dict(vocab_file=vocab_file))
train_dataloader = dict(dataset=dict(tokenizer=tokenizer))
val_dataloader = dict(dataset=dict(tokenizer=tokenizer))
test_dataloader = dict(dataset=dict(tokenizer=tokenizer))
# The published BiGRU branch trains precomputed features with AdamW's default weight decay.
optim_wrapper = dict(optimizer=dict(weight_decay=0.01))
