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
# The pipelines of vse_precomp.py with this tokenizer.
train_pipeline = [
    dict(type='TokenizeCaption', tokenizer=tokenizer),
    dict(type='RandomRegionDrop', drop_prob=0.2),
    dict(type='RandomWordAugment', tokenizer=tokenizer, prob=0.2),
    dict(type='PackVSEInputs'),
]
test_pipeline = [dict(type='TokenizeCaption', tokenizer=tokenizer), dict(type='PackVSEInputs')]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
# The published BiGRU branch trains precomputed features with AdamW's default weight decay.
optim_wrapper = dict(optimizer=dict(weight_decay=0.01))
