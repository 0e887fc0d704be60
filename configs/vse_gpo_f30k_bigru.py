# VSE∞ on Flickr30K: BUTD region features + BiGRU text, GPO (1K R@1 76.5 / 56.4, rSum 498.1).
# Build the vocabulary first:
#   python tools/misc/build_vocab.py data/f30k/precomp/train_caps.txt --out data/f30k/vocab.json
_base_ = [
    './_base_/models/vse_region_bigru.py',
    './_base_/datasets/vse_f30k_precomp.py',
    './_base_/schedules/vse_25e.py',
    './_base_/vse_runtime.py',
]
vocab_file = 'data/f30k/vocab.json'
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
